// paramtree — `treedef`: the structure of a tree without its leaves.
// Stored as JAX and optree do: a flat post-order array of nodes, each with its kind, arity,
// leaf count, node count and metadata (dict keys, record name/fields/static values, ties).
// The array lives in one immutable shared block, so copying is O(1) and equality first
// compares identity, then a hash cached at construction, and only then the nodes.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <paramtree/detail/node.hpp>
#include <paramtree/path.hpp>

namespace paramtree {

namespace detail {
struct treedef_node {
    node_kind kind = node_kind::leaf;
    std::size_t arity = 0;
    std::size_t num_leaves = 0;
    std::size_t num_nodes = 1;
    node_meta meta;
};
struct treedef_impl {
    std::vector<treedef_node> nodes; // post-order: the root is last
    std::size_t hash = 0;
};
[[nodiscard]] std::size_t hash_nodes(const std::vector<treedef_node>& nodes) noexcept;
} // namespace detail

/// The structure of a tree: what `flatten` returns beside the leaves.
///
///     auto [leaves, def] = pt::flatten(t);
///     assert(def.num_leaves() == leaves.size());
///     pt::tree back = pt::unflatten(def, leaves);
class treedef {
public:
    /// The structure of a single leaf: `*`.
    treedef() noexcept;
    treedef(const treedef&) noexcept = default;
    treedef& operator=(const treedef&) noexcept = default;
    /// Moving leaves the source the leaf structure `*` (its default state).
    treedef(treedef&& o) noexcept;
    treedef& operator=(treedef&& o) noexcept;
    ~treedef() = default;
    explicit treedef(std::shared_ptr<const detail::treedef_impl> impl) : impl_(std::move(impl)) {}

    [[nodiscard]] std::size_t num_leaves() const noexcept { return root().num_leaves; }
    [[nodiscard]] std::size_t num_nodes() const noexcept { return impl_->nodes.size(); }
    [[nodiscard]] node_kind kind() const noexcept { return root().kind; }
    /// Number of direct children of the root.
    [[nodiscard]] std::size_t arity() const noexcept { return root().arity; }
    /// The structures of the root's children, in storage order.
    [[nodiscard]] std::vector<treedef> children() const;
    /// Replaces every leaf `*` by `inner`: the structure of a tree of `inner`-shaped trees.
    [[nodiscard]] treedef compose(const treedef& inner) const;
    /// Cached hash (includes dict keys, record metadata and ties).
    [[nodiscard]] std::size_t hash() const noexcept { return impl_->hash; }
    /// `treedef({'a': *, 'b': [*, *]})`.
    [[nodiscard]] std::string to_string() const;
    /// Paths to every leaf, in leaf order.
    [[nodiscard]] std::vector<path> leaf_paths() const;

    /// Equal structure. O(1) when both come from the same tree or the same unflatten.
    friend bool operator==(const treedef& a, const treedef& b);

    [[nodiscard]] const std::vector<detail::treedef_node>& nodes() const noexcept {
        return impl_->nodes;
    }
    [[nodiscard]] const std::shared_ptr<const detail::treedef_impl>& impl() const noexcept {
        return impl_;
    }

private:
    [[nodiscard]] const detail::treedef_node& root() const noexcept { return impl_->nodes.back(); }
    std::shared_ptr<const detail::treedef_impl> impl_;
};

/// True when both share one structure block (equal without comparing nodes).
[[nodiscard]] inline bool same_block(const treedef& a, const treedef& b) noexcept {
    return a.impl() == b.impl();
}

} // namespace paramtree

#ifndef PARAMTREE_DOXYGEN // Doxygen 1.9 cannot place a specialisation of a std template
/// Hashing a treedef is O(1): the hash is computed once, when the structure is built.
template <>
struct std::hash<paramtree::treedef> {
    std::size_t operator()(const paramtree::treedef& d) const noexcept { return d.hash(); }
};
#endif
