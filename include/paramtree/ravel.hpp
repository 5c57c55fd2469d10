// paramtree — ravel: all float array leaves of a tree as one contiguous vector, plus the
// function that rebuilds the tree from such a vector (for optimizers, all-reduce, line search).
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

/// Rebuilds a tree from a flat vector; keeps the structure, shapes, dtypes and the non-float
/// leaves of the tree it came from.
class unravel_fn {
public:
    unravel_fn(treedef def, std::vector<tree> leaves, std::vector<std::size_t> float_slots,
               std::size_t total);
    /// The tree with its float leaves read from `flat` (any float dtype; cast back per leaf).
    /// Throws shape_error if `flat` is not 1-d of the raveled size, leaf_error if not float.
    [[nodiscard]] tree operator()(const array& flat) const;
    /// Number of elements the flat vector must have.
    [[nodiscard]] std::size_t size() const noexcept { return total_; }

private:
    treedef def_;
    std::vector<tree> leaves_;
    std::vector<std::size_t> float_slots_;
    std::size_t total_;
};

struct raveled {
    array flat;
    unravel_fn unravel;
};

/// Concatenates every float32/float64 array leaf (flatten order, row-major) into one 1-d
/// array: float64 if any leaf is float64, else float32. Other leaves (int arrays, scalars,
/// strings) are kept aside and restored by `unravel` unchanged.
///
///     auto [flat, unravel] = pt::ravel(params);
///     pt::tree back = unravel(flat);
[[nodiscard]] raveled ravel(const tree& t);

} // namespace paramtree
