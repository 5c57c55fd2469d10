// paramtree — convolutions over NCHW images and NCL sequences (PyTorch's layout and defaults).
// conv2d: x [N, C, H, W] with weight [O, C / groups, KH, KW] and an optional bias [O] gives
// [N, O, OH, OW], OH = (H + 2 padding - dilation (KH - 1) - 1) / stride + 1 (likewise OW).
// Forward and backward run as matrix products through the process's matmul library (im2col:
// each window's values laid out as a column, then one product per group for the whole batch).
// float32 and float64; both operands of one dtype.
#pragma once

#include <array>
#include <cstddef>

#include <paramtree/array.hpp>

namespace paramtree {

/// Stride, padding (zeros on both sides), dilation (the gap between kernel taps) per spatial
/// axis (height, width), and the number of groups (1: dense; C: depthwise).
struct conv2d_options {
    std::array<std::size_t, 2> stride{1, 1};
    std::array<std::size_t, 2> padding{0, 0};
    std::array<std::size_t, 2> dilation{1, 1};
    std::size_t groups = 1;
};

/// 2-d convolution (cross-correlation, as in every framework) of `x` [N, C, H, W] with `w`
/// [O, C / groups, KH, KW], plus `b` [O]: `torch.nn.functional.conv2d`. Throws shape_error
/// naming the operands when ranks, channels, groups or dtypes do not fit or the output would
/// be empty.
///
///     const auto x = pt::array::ones({8, 3, 28, 28});
///     const auto w = pt::array::ones({16, 3, 5, 5}), b = pt::array::zeros({16});
///     pt::array y = pt::conv2d(x, w, b, {.stride = {2, 2}, .padding = {2, 2}});
///     assert((y.shape() == pt::shape_type{8, 16, 14, 14}));
[[nodiscard]] array conv2d(const array& x, const array& w, const array& b,
                           const conv2d_options& options = {});
/// The same without a bias.
[[nodiscard]] array conv2d(const array& x, const array& w, const conv2d_options& options = {});

/// Options of conv1d: one spatial axis.
struct conv1d_options {
    std::size_t stride = 1;
    std::size_t padding = 0;
    std::size_t dilation = 1;
    std::size_t groups = 1;
};

/// 1-d convolution of `x` [N, C, L] with `w` [O, C / groups, K], plus `b` [O]: a conv2d
/// over a height of 1.
///
///     const auto x = pt::array::ones({4, 2, 100});
///     pt::array y = pt::conv1d(x, pt::array::ones({6, 2, 3}), pt::array::zeros({6}),
///                              {.padding = 1});
///     assert((y.shape() == pt::shape_type{4, 6, 100}));
[[nodiscard]] array conv1d(const array& x, const array& w, const array& b,
                           const conv1d_options& options = {});
/// The same without a bias.
[[nodiscard]] array conv1d(const array& x, const array& w, const conv1d_options& options = {});

} // namespace paramtree
