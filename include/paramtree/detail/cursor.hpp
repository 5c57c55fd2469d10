// paramtree — internal: resolving a path in a tree. One walk serves every lookup — tree::at
// and contains, canonical paths, share and untie, tree_at through ties, contract's sources:
// Shared scopes are transparent (their child is where the path continues), and the walk
// reports the innermost scope it passed, where a tie's relative source starts. Ties are
// followed only on request (`through_ties`), with a set of the ties visited so that a cycle
// is an error, not a loop.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include <paramtree/detail/node.hpp>
#include <paramtree/path.hpp>
#include <paramtree/transform.hpp>

namespace paramtree::detail {

/// Where a path led.
struct location {
    /// The node at the path (a Shared node there is returned as itself), or null where it
    /// does not exist.
    const node* target = nullptr;
    /// Path entries resolved: the path's length when found, else where the walk stopped.
    std::size_t depth = 0;
    /// The last node reached: the target, or the node that lacks entry `depth`.
    const node* last = nullptr;
    /// The child of the innermost Shared node passed (a tie's source is relative to it), and
    /// the length of the path prefix at which it starts; null and 0 outside any scope.
    const node* scope = nullptr;
    std::size_t scope_depth = 0;
    /// With `leaf_offsets`: the index of the target's first leaf among the root's (pruned)
    /// leaves, as flatten numbers them.
    std::size_t leaf_offset = 0;
};

/// `n`, or the first node below it that is not a Shared node (a scope's content).
[[nodiscard]] const node* skip_shared(const node* n) noexcept;

/// Walks `p` from `root`; never throws. `leaf_offsets` also counts the leaves before the
/// target (a sum over earlier siblings at each step: only contract's plan asks for it).
[[nodiscard]] location try_locate(const node& root, const path& p,
                                  bool leaf_offsets = false) noexcept;

/// `try_locate`, but a path that does not exist is a path_error from `context` naming the
/// deepest prefix that does and what it lacks.
[[nodiscard]] location locate(const node& root, const path& p, std::string_view context,
                              bool leaf_offsets = false);

/// `p` with every tie on the way replaced by its source (a tie's source path starts at its
/// scope), and the ties' transforms prepended to `chain` in the order they apply. Returns the
/// path to the tied-to node; a missing entry stops the walk (the caller's existence check
/// names it). A tie through a callable, or a cycle of ties, is a sharing_error from `context`.
[[nodiscard]] path through_ties(const node& root, path p, std::vector<transform>& chain,
                                std::string_view context);

} // namespace paramtree::detail
