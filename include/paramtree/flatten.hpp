// paramtree — flatten a tree into leaves plus a treedef, and rebuild it.
// All walks are iterative: a chain of 100,000 nested lists flattens without deep recursion.
#pragma once

#include <functional>
#include <span>
#include <utility>
#include <vector>

#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

/// Decides that a subtree is to be treated as one leaf (it is then not descended into).
using leaf_predicate = std::function<bool(const tree&)>;

struct flat_tree {
    std::vector<tree> leaves;
    treedef def;
};

/// The leaves of `t` in order (dict children in sorted key order) and its structure.
/// O(leaves) when `t` was flattened or unflattened before (the treedef is cached in the node).
///
///     auto [leaves, def] = pt::flatten(pt::list({1, pt::dict({{"b", 2}, {"a", 3}})}));
///     assert(leaves.size() == 3 && leaves[1].as<std::int64_t>() == 3);  // 'a' before 'b'
[[nodiscard]] flat_tree flatten(const tree& t);
/// As `flatten(t)`, but a subtree for which `is_leaf` returns true is one leaf.
[[nodiscard]] flat_tree flatten(const tree& t, const leaf_predicate& is_leaf);

/// The leaves of `t`, in flatten order.
[[nodiscard]] std::vector<tree> leaves(const tree& t);
/// The treedef of `t`.
[[nodiscard]] treedef structure(const tree& t);

/// Rebuilds a tree of structure `def` from `leaves` (O(nodes); leaves are not copied).
/// Throws leaf_count_error if `leaves.size() != def.num_leaves()`.
[[nodiscard]] tree unflatten(const treedef& def, std::span<const tree> leaves);
[[nodiscard]] tree unflatten(const treedef& def, std::vector<tree>&& leaves);

struct flat_tree_with_path {
    std::vector<std::pair<path, tree>> leaves;
    treedef def;
};
/// The leaves of `t` with their key paths.
///
///     auto [items, def] = pt::flatten_with_path(t);
///     std::cout << pt::keystr(items[0].first);   // ['layers'][0].weight
[[nodiscard]] flat_tree_with_path flatten_with_path(const tree& t);
[[nodiscard]] flat_tree_with_path flatten_with_path(const tree& t, const leaf_predicate& is_leaf);

/// Flattens `t` down to the structure `prefix`: one subtree of `t` per leaf of `prefix`.
/// Throws structure_error naming the first path where `t` does not extend `prefix`.
///
///     // prefix [*, *] against [1, {'a': 2}] gives the subtrees 1 and {'a': 2}.
[[nodiscard]] std::vector<tree> flatten_up_to(const treedef& prefix, const tree& t);

} // namespace paramtree
