// paramtree — checking a gradient against finite differences.
// `check_grad(f, args)` compares the gradient paramtree computes for `f` with central
// differences of `f`, element by element, in float64: PyTorch's `torch.autograd.gradcheck`,
// JAX's `check_grads`. It is how a user tests an operation of their own
// (<paramtree/custom_vjp.hpp>) or a model with ties.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/detail/arguments.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/path.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

/// How closely the gradient must match: element by element,
/// |analytic - numeric| <= atol + rtol * |numeric| (PyTorch gradcheck's defaults).
struct grad_check_options {
    double eps = 1e-6;  ///< the finite-difference step
    double atol = 1e-5; ///< absolute tolerance
    double rtol = 1e-3; ///< relative tolerance
    /// At most this many elements of each leaf are checked, spread evenly over it (0: all).
    /// Each element costs two calls of `f`.
    std::size_t max_elements_per_leaf = 0;
    /// Seeds the fixed random weights r that turn a non-scalar output into sum(f(x) * r).
    std::uint64_t seed = 0;
};

/// The outcome: true when every checked element is within tolerance; otherwise the worst one
/// (relative to its tolerance), where it is and both values.
struct grad_check_result {
    bool passed = true;
    std::size_t checked = 0;  ///< elements compared
    double max_abs_error = 0; ///< the largest |analytic - numeric|
    std::string worst_at;     ///< e.g. `argument 0 .weight[2, 1]`
    double analytic = 0;      ///< at worst_at
    double numeric = 0;       ///< at worst_at
    explicit operator bool() const noexcept { return passed; }
    /// One line: `gradient check passed: 24 elements, max |error| 3.1e-10` or what failed.
    [[nodiscard]] std::string to_string() const;
};

namespace detail {
/// Where a checked leaf is: which argument, and where in it (empty for an array argument).
struct argument_leaf {
    std::size_t argument = 0;
    path where;
};
/// The check over the float leaves of all arguments: `f` rebuilds the arguments from the
/// leaves and returns its output. `places[i]` says where leaf i is.
[[nodiscard]] grad_check_result
check_grad_leaves(const std::function<array(const std::vector<tree>&)>& f,
                  const std::vector<tree>& leaves, const std::vector<argument_leaf>& places,
                  const grad_check_options& options);
} // namespace detail

/// Checks the gradient of `f` at `args` (a tuple of its arguments) against central
/// differences. `f` returns a float64 array of any shape (a non-scalar output is checked
/// through sum(f(x) * r) for fixed random r, which exercises the whole Jacobian). Every float
/// leaf of a `pt::tree` or `pt::array` argument is checked and must be float64 (in float32
/// the differences are lost to rounding): a float32 leaf is a leaf_error naming it. Other
/// arguments (integer indices, keys, sizes) are passed through unchanged. A tree with ties is
/// checked through its pruned leaves: moving a tied weight moves every position it fills.
///
///     auto f = [](const pt::array& x, const pt::array& w) {
///         return pt::tanh(pt::matmul(x, w)); };
///     const auto x = pt::random::normal(k1, {3, 4}, pt::dtype::float64);
///     const auto w = pt::random::normal(k2, {4, 2}, pt::dtype::float64);
///     const pt::grad_check_result r = pt::check_grad(f, std::tuple{x, w});
///     assert(r && r.checked == 12 + 8);
template <class F, class... Args>
[[nodiscard]] grad_check_result check_grad(const F& f, const std::tuple<Args...>& args,
                                           const grad_check_options& options = {}) {
    const auto flat =
        std::apply([](const Args&... a) { return detail::flat_arguments<Args...>(a...); }, args);
    std::vector<detail::argument_leaf> places;
    for (std::size_t i = 0; i < flat.count; ++i) {
        if (!flat.is_tree[i]) {
            if (flat.first(i + 1) > flat.first(i)) places.push_back({i, {}}); // an array
            continue;
        }
        for (const path& p : flat.structure(i).leaf_paths())
            places.push_back({i, p});
    }
    // As value_and_grad does, the function sees each tree with its ties filled in.
    const auto call = [&](const std::vector<tree>& in) {
        return array(flat.call(f, in, true, args));
    };
    return detail::check_grad_leaves(call, flat.leaves, places, options);
}

} // namespace paramtree
