// paramtree — split a tree by a leaf predicate and join the parts again (Equinox style):
// partition / combine / filter, and the usual filters is_array, is_float_array, is_inexact.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// True for array leaves.
[[nodiscard]] bool is_array(const tree& leaf);
/// True for float32/float64 array leaves (what an optimizer trains).
[[nodiscard]] bool is_float_array(const tree& leaf);
/// True for float arrays and double scalars.
[[nodiscard]] bool is_inexact(const tree& leaf);

using leaf_filter = std::function<bool(const tree& leaf)>;
using path_filter = std::function<bool(const path& p, const tree& leaf)>;

/// The two halves of a partition; each has the input's structure with None holes.
struct partitioned {
    tree matching;
    tree rest;
};

/// Splits `t` into the leaves that satisfy `pred` and the others. Where a leaf went to one
/// side, the other side holds None at that position, so `combine` can put them together.
///
///     auto [params, static_] = pt::partition(model, pt::is_float_array);
///     auto back = pt::combine({params, static_});
[[nodiscard]] partitioned partition(const tree& t, const leaf_filter& pred);
/// What partition does when a path predicate disagrees within a tie group (say, a tied output
/// projection marked frozen while its source embedding is trainable).
enum class tie_policy {
    error,  ///< throw sharing_error naming both paths (the default)
    source, ///< the source position's answer wins
    any,    ///< the group goes to `matching` if any of its positions matches
    all,    ///< the group goes to `matching` only if all its positions match
};

/// As partition, with the predicate also seeing each leaf's path. In a tree with ties the
/// predicate is asked at every position of a tie group (the source and each tied position,
/// with the source's value); `policy` decides when the answers differ.
///
///     auto [head, rest] = pt::partition(lm, [](const pt::path& p, const pt::tree&) {
///         return pt::keystr(p).starts_with("[1]"); }, pt::tie_policy::any);
[[nodiscard]] partitioned partition(const tree& t, const path_filter& pred,
                                    tie_policy policy = tie_policy::error);

/// `t` with every leaf that fails `pred` replaced by `replacement` (None by default).
[[nodiscard]] tree filter(const tree& t, const leaf_filter& pred, const tree& replacement = tree{});

/// Joins partitioned trees: at every position the first part that is not None wins.
/// Throws structure_error (naming the path) if the parts do not line up.
[[nodiscard]] tree combine(std::span<const tree> parts);
[[nodiscard]] inline tree combine(std::initializer_list<tree> parts) {
    return combine(std::span<const tree>(parts.begin(), parts.size()));
}

} // namespace paramtree
