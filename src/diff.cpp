// paramtree — tree_diff / tree_equal: a simultaneous pre-order walk of two trees.
#include <paramtree/detail/walk.hpp>
#include <paramtree/detail/enum_names.hpp>
#include <paramtree/diff.hpp>

#include <cmath>

namespace paramtree {

namespace {

template <bool StopAtFirst>
void diff_walk(const tree& a, const tree& b, tolerance tol, std::vector<tree_difference>& out) {
    struct item {
        detail::node_ptr x, y;
        std::size_t depth;
        std::optional<path_entry> entry;
    };
    std::vector<item> stack;
    stack.push_back({a.node(), b.node(), 0, std::nullopt});
    path cur;
    while (!stack.empty()) {
        item it = std::move(stack.back());
        stack.pop_back();
        detail::move_to(cur, it.depth, it.entry);
        // The same immutable node is equal to itself, unless it holds a NaN and NaN is not
        // equal to NaN: then its float leaves are still looked at (and nothing else is).
        if (it.x.get() == it.y.get() && (tol.equal_nan || (it.x->flags & detail::has_float) == 0))
            continue;
        const auto& x = *it.x;
        const auto& y = *it.y;
        auto report = [&](diff_kind k, std::string l, std::string r) {
            out.push_back({cur, k, std::move(l), std::move(r)});
        };
        if (x.kind == node_kind::leaf && y.kind == node_kind::leaf) {
            if (x.value.index() != y.value.index()) {
                report(diff_kind::leaf_type, detail::describe(x), detail::describe(y));
            } else if (const auto* xa = std::get_if<array>(&x.value)) {
                const auto& ya = std::get<array>(y.value);
                if (xa->dtype() != ya.dtype())
                    report(diff_kind::dtype, xa->describe(), ya.describe());
                else if (xa->shape() != ya.shape())
                    report(diff_kind::shape, xa->describe(), ya.describe());
                else if (!array_equal(*xa, ya, tol.rtol, tol.atol, tol.equal_nan))
                    report(diff_kind::value, xa->describe(), ya.describe());
            } else if (const auto* xd = std::get_if<double>(&x.value)) {
                const double yd = std::get<double>(y.value);
                const bool both_nan = std::isnan(*xd) && std::isnan(yd);
                if (!(*xd == yd || (both_nan && tol.equal_nan) ||
                      std::abs(*xd - yd) <= tol.atol + tol.rtol * std::abs(yd)))
                    report(diff_kind::value, detail::describe(x), detail::describe(y));
            } else {
                const bool equal = std::visit(
                    [&](const auto& xv) {
                        using V = std::decay_t<decltype(xv)>;
                        if constexpr (std::is_same_v<V, array> || std::is_same_v<V, std::monostate>)
                            return true; // arrays are handled above
                        else
                            return xv == std::get<V>(y.value);
                    },
                    x.value);
                if (!equal) report(diff_kind::value, detail::describe(x), detail::describe(y));
            }
        } else if (x.kind != y.kind || x.children.size() != y.children.size() ||
                   !detail::meta_equal(x.meta, y.meta)) {
            report(diff_kind::structure, detail::describe(x), detail::describe(y));
        } else {
            for (std::size_t k = x.children.size(); k-- > 0;)
                stack.push_back({x.children[k], y.children[k], cur.size(),
                                 detail::child_entry(x.meta, x.kind, k)});
        }
        if constexpr (StopAtFirst) {
            if (!out.empty()) return;
        }
    }
}

} // namespace

std::vector<tree_difference> tree_diff(const tree& a, const tree& b, tolerance tol) {
    std::vector<tree_difference> out;
    diff_walk<false>(a, b, tol, out);
    return out;
}

bool tree_equal(const tree& a, const tree& b, tolerance tol) {
    std::vector<tree_difference> out;
    diff_walk<true>(a, b, tol, out);
    return out.empty();
}

std::string_view diff_kind_name(diff_kind k) noexcept {
    static constexpr std::array<std::string_view, 5> names{"structure", "leaf type", "dtype",
                                                           "shape", "value"};
    return detail::name_in(names, k);
}

} // namespace paramtree
