// paramtree — aliases: positions of a plain tree that hold the same buffer (or the same
// subtree node). Such a tree looks tied but is not: the first tree_map splits the copies.
// `share_aliases` turns them into real ties so they stay one parameter.
#pragma once

#include <vector>

#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// A position and the other positions that hold the same array buffer or subtree node.
struct alias_group {
    path source;              // the first position in flatten order
    std::vector<path> others; // later positions holding the same thing
};

/// Every group of aliased positions of `t`, in flatten order of their first position. Arrays
/// alias when they share a buffer (`same_storage`, possibly reshaped); subtrees alias when
/// they are the same node. Positions inside an aliased subtree are not listed again.
///
///     auto w = pt::array::ones({4, 4});
///     auto groups = pt::find_aliases(pt::dict({{"a", w}, {"b", w}}));  // ['a'] -> ['b']
[[nodiscard]] std::vector<alias_group> find_aliases(const tree& t);

/// `t` with every alias turned into a tie to its first position (one Shared node; a reshaped
/// view becomes a tie with a reshape transform). Returns `t` itself when nothing is aliased.
[[nodiscard]] tree share_aliases(const tree& t);

} // namespace paramtree
