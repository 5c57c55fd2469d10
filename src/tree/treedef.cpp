// paramtree — treedef: equality, hashing, children, compose, text.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/treedef.hpp>

#include <variant>

#include <fmt/format.h>

namespace paramtree {

namespace detail {

std::size_t hash_nodes(const std::vector<treedef_node>& nodes) noexcept {
    std::size_t h = 0x7472656564656600ULL;
    for (const auto& n : nodes) {
        h = mix(h, static_cast<std::size_t>(n.kind));
        h = mix(h, n.arity);
        h = mix(h, hash_meta(n.meta));
    }
    return h;
}

} // namespace detail

namespace {
const std::shared_ptr<const detail::treedef_impl>& leaf_impl() noexcept {
    // One leaf: `*` (num_leaves 1, as flatten gives a leaf tree).
    static const auto leaf =
        detail::make_treedef({detail::treedef_node{.num_leaves = 1, .meta = {}}}).impl();
    return leaf;
}
} // namespace

treedef::treedef() noexcept : impl_(leaf_impl()) {}
treedef::treedef(treedef&& o) noexcept : impl_(std::exchange(o.impl_, leaf_impl())) {}
treedef& treedef::operator=(treedef&& o) noexcept {
    if (this != &o) impl_ = std::exchange(o.impl_, leaf_impl());
    return *this;
}

bool operator==(const treedef& a, const treedef& b) {
    if (a.impl_ == b.impl_) return true;
    if (a.impl_->hash != b.impl_->hash) return false;
    const auto& x = a.impl_->nodes;
    const auto& y = b.impl_->nodes;
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!detail::same_level(x[i], y[i])) return false;
    return true;
}

std::vector<treedef> treedef::children() const {
    std::vector<treedef> out;
    for (const auto pos : detail::child_positions(impl_->nodes, impl_->nodes.size() - 1))
        out.push_back(detail::slice(*this, pos));
    return out;
}

treedef treedef::compose(const treedef& inner) const {
    std::vector<detail::treedef_node> out;
    out.reserve(num_leaves() * inner.num_nodes() + num_nodes());
    struct counts {
        std::size_t leaves, nodes;
    };
    std::vector<counts> stack;
    for (const auto& n : impl_->nodes) {
        if (n.kind == node_kind::leaf) {
            out.insert(out.end(), inner.nodes().begin(), inner.nodes().end());
            stack.push_back({inner.num_leaves(), inner.num_nodes()});
            continue;
        }
        counts c{0, 1};
        for (std::size_t k = 0; k < n.arity; ++k) {
            c.leaves += stack.back().leaves;
            c.nodes += stack.back().nodes;
            stack.pop_back();
        }
        auto copy = n;
        copy.num_leaves = c.leaves;
        copy.num_nodes = c.nodes;
        out.push_back(std::move(copy));
        stack.push_back(c);
    }
    return detail::make_treedef(std::move(out));
}

std::vector<path> treedef::leaf_paths() const {
    std::vector<path> out;
    out.reserve(num_leaves());
    detail::preorder(impl_->nodes,
                     [&](const detail::treedef_node& n, const detail::def_position<1>& at) {
                         if (n.kind != node_kind::leaf) return detail::visit::descend;
                         out.push_back(at.current_path());
                         return detail::visit::skip;
                     });
    return out;
}

std::string treedef::to_string() const {
    // Pre-order emission with an explicit stack: deep structures print without recursion.
    using action = std::variant<std::string, std::size_t>;
    const auto& nodes = impl_->nodes;
    std::vector<action> stack{std::size_t{nodes.size() - 1}};
    std::string out = "treedef(";
    while (!stack.empty()) {
        action a = std::move(stack.back());
        stack.pop_back();
        if (auto* text = std::get_if<std::string>(&a)) {
            out += *text;
            continue;
        }
        const std::size_t i = std::get<std::size_t>(a);
        const auto& n = nodes[i];
        const auto cs = detail::child_positions(nodes, i);
        std::vector<action> seq; // in output order, reversed onto the stack below
        if (n.kind == node_kind::leaf) {
            seq.emplace_back(std::string("*"));
        } else {
            // The spelling print() uses too (detail::syntax_of), here all on one line.
            detail::node_syntax syn = detail::syntax_of(n.kind, n.meta, cs.size());
            seq.emplace_back(std::move(syn.open));
            std::size_t parts = 0;
            for (auto& [k, label] : syn.children) {
                seq.emplace_back((parts++ > 0 ? ", " : "") + std::move(label));
                seq.emplace_back(cs[k]);
            }
            if (syn.single_tuple) seq.emplace_back(std::string(","));
            for (auto& st : syn.statics)
                seq.emplace_back((parts++ > 0 ? ", " : "") + std::move(st));
            if (!syn.atom) seq.emplace_back(std::move(syn.close));
        }
        for (std::size_t k = seq.size(); k-- > 0;)
            stack.push_back(std::move(seq[k]));
    }
    return out + ")";
}

} // namespace paramtree
