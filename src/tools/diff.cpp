// paramtree — tree_diff / tree_equal: a simultaneous pre-order walk of two trees.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/detail/enum_names.hpp>
#include <paramtree/diff.hpp>

#include <cmath>

namespace paramtree {

namespace {

// Two leaves: reports a difference of leaf type, dtype, shape or value, if any.
template <class Report>
void compare_leaves(const detail::node& x, const detail::node& y, tolerance tol, Report& report) {
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
}

template <bool StopAtFirst>
void diff_walk(const tree& a, const tree& b, tolerance tol, std::vector<tree_difference>& out) {
    using detail::visit;
    detail::preorder2(
        *a.node(), *b.node(),
        [&](const detail::node& x, const detail::node& y, const detail::walk_position<2>& at) {
            // The same immutable node is equal to itself, unless it holds a NaN and NaN is not
            // equal to NaN: then its float leaves are still looked at (and nothing else is).
            if (&x == &y && (tol.equal_nan || (x.flags & detail::has_float) == 0))
                return visit::skip;
            // The path is built only for a difference.
            auto report = [&](diff_kind k, std::string l, std::string r) {
                out.push_back({at.current_path(), k, std::move(l), std::move(r)});
            };
            visit next = visit::skip;
            if (x.kind == node_kind::leaf && y.kind == node_kind::leaf) {
                compare_leaves(x, y, tol, report);
            } else if (x.kind != y.kind || x.children.size() != y.children.size() ||
                       !detail::meta_equal(x.meta, y.meta)) {
                report(diff_kind::structure, detail::describe(x), detail::describe(y));
            } else {
                next = visit::descend;
            }
            if constexpr (StopAtFirst) {
                if (!out.empty()) return visit::stop;
            }
            return next;
        });
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
