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
/// As partition, with the predicate also seeing each leaf's path.
[[nodiscard]] partitioned partition(const tree& t, const path_filter& pred);

/// `t` with every leaf that fails `pred` replaced by `replacement` (None by default).
[[nodiscard]] tree filter(const tree& t, const leaf_filter& pred, const tree& replacement = tree{});

/// Joins partitioned trees: at every position the first part that is not None wins.
/// Throws structure_error (naming the path) if the parts do not line up.
[[nodiscard]] tree combine(std::span<const tree> parts);
[[nodiscard]] inline tree combine(std::initializer_list<tree> parts) {
    return combine(std::span<const tree>(parts.begin(), parts.size()));
}

} // namespace paramtree
