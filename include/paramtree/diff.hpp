// paramtree — structural and value comparison of trees: tree_diff and tree_equal.
#pragma once

#include <string>
#include <vector>

#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// What differs at a path.
enum class diff_kind { structure, leaf_type, dtype, shape, value };

/// One difference between two trees.
struct tree_difference {
    path where;
    diff_kind kind;
    std::string left;  // what the first tree has there
    std::string right; // what the second tree has there
};

/// Tolerances for comparing array and double leaves: |a - b| <= atol + rtol * |b|.
struct tolerance {
    double rtol = 0;
    double atol = 0;
    /// NaN equals NaN (numpy's `equal_nan`). Off by default, as in numpy: a leaf holding a
    /// NaN is then unequal to every tree, itself included, so `tree_equal(t, t)` and
    /// `tree_equal(t, load(save(t)))` give the same answer.
    bool equal_nan = false;
};

/// Every difference between `a` and `b`, in pre-order. Identical subtrees (the same node,
/// as after a tree_at) are skipped in O(1) with `equal_nan`; without it they are scanned for
/// NaN only. A structural difference is reported once and not descended into.
///
///     const pt::tree before = t, after = pt::tree_at("['w']", t, pt::array::zeros({3}));
///     for (const auto& d : pt::tree_diff(before, after))
///         std::cout << pt::keystr(d.where) << ": " << d.left << " vs " << d.right << "\n";
[[nodiscard]] std::vector<tree_difference> tree_diff(const tree& a, const tree& b,
                                                     tolerance tol = {});

/// Same structure (ties included) and equal leaves, within `tol` for arrays and doubles.
///
///     assert(pt::tree_equal(t, pt::unflatten(pt::structure(t), pt::leaves(t))));
[[nodiscard]] bool tree_equal(const tree& a, const tree& b, tolerance tol = {});

/// `structure`, `leaf type`, `dtype`, `shape`, `value`.
[[nodiscard]] std::string_view diff_kind_name(diff_kind k) noexcept;

} // namespace paramtree
