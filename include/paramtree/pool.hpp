// paramtree — pooling over NCHW images (PyTorch's layout and defaults).
// A window of `kernel` slides by `stride` (default: the kernel, so windows do not overlap) over
// x [N, C, H, W] padded by `padding`; the result is [N, C, OH, OW] with
// OH = (H + 2 padding - kernel) / stride + 1 (floor, like PyTorch's ceil_mode=False).
#pragma once

#include <array>
#include <cstddef>

#include <paramtree/array.hpp>

namespace paramtree {

/// The window: kernel size, stride (0: the kernel size) and padding per axis (height, width).
struct pool2d_options {
    std::array<std::size_t, 2> kernel{2, 2};
    std::array<std::size_t, 2> stride{0, 0};
    std::array<std::size_t, 2> padding{0, 0};
};

/// The largest value of each window (padding never wins); the gradient goes to the first
/// largest element of the window, as in PyTorch. Throws shape_error for a rank other than 4,
/// a padding above half the kernel, or an empty result.
///
///     const auto x = pt::array::ones({8, 6, 28, 28});
///     pt::array y = pt::max_pool2d(x, {.kernel = {2, 2}});
///     assert((y.shape() == pt::shape_type{8, 6, 14, 14}));
[[nodiscard]] array max_pool2d(const array& x, const pool2d_options& options = {});

/// The mean of each window, padding counted as zeros (PyTorch's count_include_pad=True).
///
///     pt::array y = pt::avg_pool2d(pt::array::ones({1, 1, 4, 4}), {.kernel = {2, 2}});
///     assert((y.shape() == pt::shape_type{1, 1, 2, 2}) && y.item(0) == 1.0);
[[nodiscard]] array avg_pool2d(const array& x, const pool2d_options& options = {});

} // namespace paramtree
