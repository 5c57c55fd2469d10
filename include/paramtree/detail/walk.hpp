// paramtree — internal: helpers shared by the tree algorithms.
#pragma once

#include <optional>
#include <string>

#include <paramtree/detail/node.hpp>
#include <paramtree/path.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree::detail {

[[nodiscard]] inline std::size_t mix(std::size_t h, std::size_t v) noexcept {
    return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
}

struct difference {
    path where;
    std::string left;
    std::string right;
};
/// The first place (pre-order) where two structures differ, or nullopt if they are equal.
[[nodiscard]] std::optional<difference> first_difference(const treedef& a, const treedef& b);
/// The structure of a subtree of `t` as a standalone treedef (nodes [first, last]).
[[nodiscard]] treedef slice(const treedef& t, std::size_t last);
/// Builds a treedef block from post-order nodes, computing the hash.
[[nodiscard]] treedef make_treedef(std::vector<treedef_node> nodes);

/// The path entry from `n` to its child `i`; nullopt for a Shared node (paths skip it).
[[nodiscard]] std::optional<path_entry> child_entry(const node_meta& meta, node_kind kind,
                                                    std::size_t i);
/// Index of the child reached by `e`, or nullopt if `n` has no such child.
[[nodiscard]] std::optional<std::size_t> find_child(const node& n, const path_entry& e);
/// `a list of length 3`, `a dict with keys ['a', 'b']`, `a Linear record with fields (w, b)`.
[[nodiscard]] std::string describe_node(node_kind kind, std::size_t arity, const node_meta& meta);
/// For leaves: `f32[3]`, `the integer 3`, `the string 'x'`.
[[nodiscard]] std::string describe_leaf(const leaf_value& v);
/// What `n` is, for messages.
[[nodiscard]] std::string describe(const node& n);
/// Same kind, arity and metadata: the one-level structure check shared by all algorithms.
[[nodiscard]] bool same_level(const treedef_node& a, const treedef_node& b);
[[nodiscard]] bool same_level(const node& n, const treedef_node& d);

/// Children indices (post-order positions) of the treedef node at `index`, in order.
[[nodiscard]] std::vector<std::size_t> child_positions(const std::vector<treedef_node>& nodes,
                                                       std::size_t index);

} // namespace paramtree::detail
