// paramtree — internal: the geometry of sliding windows (convolution and pooling).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

#include <paramtree/detail/errors.hpp>

#include <fmt/format.h>

namespace paramtree::detail {

/// One spatial axis of a sliding window: input extent, kernel taps, stride, zero padding on
/// each side, dilation (the gap between taps), and the output extent they give.
struct window_axis {
    std::size_t in = 0, kernel = 1, stride = 1, padding = 0, dilation = 1, out = 0;

    /// The input index of output position `o`, tap `k` (may fall in the padding: then it is
    /// below 0 or at least `in`, returned as a signed value).
    [[nodiscard]] long long at(std::size_t o, std::size_t k) const noexcept {
        return static_cast<long long>(o * stride + k * dilation) - static_cast<long long>(padding);
    }

    /// The outputs [first, last) whose tap `k` falls inside the input: inner loops then run
    /// without a bounds check per element.
    struct span {
        std::size_t first = 0, last = 0;
    };
    [[nodiscard]] span inside(std::size_t k) const noexcept {
        // at(o, k) = o * stride + offset lies in [0, in) for o in [ceil(-offset / s),
        // (in - 1 - offset) / s], clamped to the outputs that exist.
        const long long offset =
            static_cast<long long>(k * dilation) - static_cast<long long>(padding);
        const auto s = static_cast<long long>(stride);
        const long long lo = offset >= 0 ? 0 : (-offset + s - 1) / s;
        const long long top = static_cast<long long>(in) - 1 - offset;
        const long long hi = top < 0 ? 0 : top / s + 1;
        const auto n = static_cast<long long>(out);
        const long long a = std::min(lo, n), b = std::max(a, std::min(hi, n));
        return {static_cast<std::size_t>(a), static_cast<std::size_t>(b)};
    }
};

/// The axis with its output extent, PyTorch's floor((in + 2p - d(k-1) - 1) / s) + 1. Throws
/// shape_error naming `op` and the operand for a zero stride, dilation or kernel, or an
/// output that would be empty.
[[nodiscard]] inline window_axis make_window_axis(const std::string& op, const char* axis,
                                                  std::size_t in, std::size_t kernel,
                                                  std::size_t stride, std::size_t padding,
                                                  std::size_t dilation,
                                                  const std::string& operand) {
    if (stride == 0 || dilation == 0 || kernel == 0)
        throw_shape(op, fmt::format("a positive kernel, stride and dilation along {}", axis),
                    fmt::format("kernel {}, stride {}, dilation {}", kernel, stride, dilation));
    const std::size_t span = dilation * (kernel - 1) + 1;
    if (in + 2 * padding < span)
        throw_shape(op,
                    fmt::format("an input at least {} along {} (the kernel's span, less twice "
                                "the padding {})",
                                span > 2 * padding ? span - 2 * padding : 0, axis, padding),
                    operand);
    return {in, kernel, stride, padding, dilation, (in + 2 * padding - span) / stride + 1};
}

} // namespace paramtree::detail
