// paramtree — differentiable array operations: arithmetic, elementwise functions, reductions
// and shapes here; indexing, matrix products and the neural-network building blocks in
// <paramtree/ops_nn.hpp>, which this header includes. Every function works on plain arrays (it just
// computes) and on the traced arrays a gradient call feeds its function (it also records how to
// send the gradient back; see <paramtree/autodiff.hpp>). Elementwise operations broadcast as numpy
// does; operands must share one dtype. Shape and dtype errors throw pt::shape_error naming the
// operation and the operands (`multiply: at <root>: expected shapes that broadcast together, found
// f32[3,4] and f32[5]`). Axes may be negative (counted from the end); an empty axis list means
// every axis.
#pragma once

#include <cstdint>
#include <vector>

#include <paramtree/array.hpp>

namespace paramtree {

// ---- arithmetic (broadcasting) --------------------------------------------------------------

/// a + b, a - b, a * b, a / b elementwise with numpy broadcasting (`/` needs floats).
///
///     const auto x = pt::array::ones({64, 512}), w = pt::array::ones({512}), b = w;
///     pt::array y = x * w + b;            // f32[64,512] * f32[512] + f32[512]
[[nodiscard]] array add(const array& a, const array& b);
[[nodiscard]] array subtract(const array& a, const array& b);
[[nodiscard]] array multiply(const array& a, const array& b);
[[nodiscard]] array divide(const array& a, const array& b);
/// -x.
[[nodiscard]] array negative(const array& x);
/// a ** b elementwise (floats; broadcasting), and a ** p for a scalar exponent.
[[nodiscard]] array pow(const array& a, const array& b);
[[nodiscard]] array pow(const array& a, double p);

[[nodiscard]] inline array operator+(const array& a, const array& b) {
    return add(a, b);
}
[[nodiscard]] inline array operator-(const array& a, const array& b) {
    return subtract(a, b);
}
[[nodiscard]] inline array operator*(const array& a, const array& b) {
    return multiply(a, b);
}
[[nodiscard]] inline array operator/(const array& a, const array& b) {
    return divide(a, b);
}
[[nodiscard]] inline array operator-(const array& x) {
    return negative(x);
}
/// Scalars take the array's dtype: `x * 0.5`, `1.0 - p`.
[[nodiscard]] array operator+(const array& a, double s);
[[nodiscard]] array operator-(const array& a, double s);
[[nodiscard]] array operator*(const array& a, double s);
[[nodiscard]] array operator/(const array& a, double s);
[[nodiscard]] array operator+(double s, const array& a);
[[nodiscard]] array operator-(double s, const array& a);
[[nodiscard]] array operator*(double s, const array& a);
[[nodiscard]] array operator/(double s, const array& a);

// ---- elementwise functions (floats) ---------------------------------------------------------

[[nodiscard]] array exp(const array& x);
[[nodiscard]] array log(const array& x);
[[nodiscard]] array sqrt(const array& x);
[[nodiscard]] array tanh(const array& x);
/// 1 / (1 + exp(-x)), computed without overflow for large |x|.
[[nodiscard]] array sigmoid(const array& x);
/// max(x, 0); the gradient at 0 is 0 (as in PyTorch and JAX).
[[nodiscard]] array relu(const array& x);
/// Gaussian error linear unit: x·Φ(x) exactly (PyTorch's default), or the tanh
/// approximation when `approximate` (PyTorch's `approximate='tanh'`).
[[nodiscard]] array gelu(const array& x, bool approximate = false);

// ---- reductions ----------------------------------------------------------------------------

/// Sum over `axes` (all when empty), keeping them as 1s if `keepdims`.
///
///     const auto x = pt::array::ones({3, 4});
///     pt::array col = pt::sum(x, {0});            // f32[3,4] -> f32[4]
///     pt::array total = pt::sum(x);               // -> f32[] (0-d)
[[nodiscard]] array sum(const array& x, const std::vector<int>& axes = {}, bool keepdims = false);
/// Mean over `axes` (floats).
[[nodiscard]] array mean(const array& x, const std::vector<int>& axes = {}, bool keepdims = false);
/// Maximum over `axes`. The gradient is shared equally among tied maxima.
[[nodiscard]] array max(const array& x, const std::vector<int>& axes = {}, bool keepdims = false);

// ---- shapes --------------------------------------------------------------------------------

/// `x` with another shape of the same size (zero-copy; `x.reshape(s)` is the same).
[[nodiscard]] array reshape(const array& x, shape_type shape);
/// Axes reversed (for a matrix: its transpose).
[[nodiscard]] array transpose(const array& x);
/// Axes permuted: output axis i is input axis `axes[i]` (negative allowed).
[[nodiscard]] array transpose(const array& x, const std::vector<int>& axes);
/// Axes `a` and `b` exchanged: `swapaxes(q, -1, -2)` transposes the last two.
[[nodiscard]] array swapaxes(const array& x, int a, int b);
/// `x` repeated along broadcast axes to `shape` (numpy's broadcast_to; a copy).
[[nodiscard]] array broadcast_to(const array& x, const shape_type& shape);

/// `x` as a constant: its value, with no gradient flowing back through it.
[[nodiscard]] array stop_gradient(const array& x);

} // namespace paramtree

#include <paramtree/ops_nn.hpp>
