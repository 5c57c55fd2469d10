// paramtree — max and average pooling over NCHW images, forward and backward.
#include <paramtree/pool.hpp>

#include "compute/kernels.hpp"
#include "compute/window.hpp"

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace paramtree {

namespace k = kernels;
using detail::cotangent_sink;
using detail::data;

namespace {

struct pool_geometry {
    std::size_t planes; // N * C: every image channel is pooled alone
    detail::window_axis h, w;
};

pool_geometry geometry(const std::string& op, const array& x, const pool2d_options& o) {
    if (x.ndim() != 4) detail::throw_shape(op, "x [N, C, H, W]", x.describe());
    k::float_dispatch(op, x, [](auto) { return 0; });
    for (std::size_t a = 0; a < 2; ++a)
        if (2 * o.padding[a] > o.kernel[a])
            detail::throw_shape(op,
                                fmt::format("a padding at most half the kernel ({} along {})",
                                            o.kernel[a] / 2, a == 0 ? "the height" : "the width"),
                                fmt::format("padding {}", o.padding[a]));
    const auto stride = [&](std::size_t a) { return o.stride[a] == 0 ? o.kernel[a] : o.stride[a]; };
    return {x.shape()[0] * x.shape()[1],
            detail::make_window_axis(op, "the height", x.shape()[2], o.kernel[0], stride(0),
                                     o.padding[0], 1, x.describe()),
            detail::make_window_axis(op, "the width", x.shape()[3], o.kernel[1], stride(1),
                                     o.padding[1], 1, x.describe())};
}

/// Calls `f(oh, ow, ih, iw)` for each in-image input position of each output's window.
template <class F>
void windows(const pool_geometry& g, F&& f) {
    for (std::size_t oh = 0; oh < g.h.out; ++oh)
        for (std::size_t ow = 0; ow < g.w.out; ++ow)
            for (std::size_t kh = 0; kh < g.h.kernel; ++kh) {
                const long long ih = g.h.at(oh, kh);
                if (ih < 0 || ih >= static_cast<long long>(g.h.in)) continue;
                for (std::size_t kw = 0; kw < g.w.kernel; ++kw) {
                    const long long iw = g.w.at(ow, kw);
                    if (iw < 0 || iw >= static_cast<long long>(g.w.in)) continue;
                    f(oh, ow, static_cast<std::size_t>(ih), static_cast<std::size_t>(iw));
                }
            }
}

/// One plane's maxima and where they came from (the index in the plane, for backward).
/// The first largest wins; a NaN wins over numbers and stays (as in PyTorch). The loops run
/// tap by tap over a whole output row: the outputs are independent, so the compare-and-select
/// has no branch and vectorises, instead of waiting on one running maximum (a third of a
/// LeNet layer's step when it did).
template <class T>
void max_plane(const pool_geometry& g, const std::vector<detail::window_axis::span>& columns,
               const T* plane, T* out, std::int32_t* from) {
    const std::size_t ow_n = g.w.out, sw = g.w.stride;
    for (std::size_t oh = 0; oh < g.h.out; ++oh) {
        T* __restrict best = out + oh * ow_n;
        std::int32_t* __restrict at = from + oh * ow_n;
        // Start from each window's first tap inside the image (one exists: padding is at most
        // half the kernel), so every output has a source index even if all it sees is -inf.
        std::size_t kh0 = 0;
        while (g.h.at(oh, kh0) < 0)
            ++kh0;
        const long long ih0 = g.h.at(oh, kh0);
        for (std::size_t ow = 0; ow < ow_n; ++ow) {
            std::size_t kw0 = 0;
            while (g.w.at(ow, kw0) < 0)
                ++kw0;
            const long long i = ih0 * static_cast<long long>(g.w.in) + g.w.at(ow, kw0);
            best[ow] = plane[i];
            at[ow] = static_cast<std::int32_t>(i);
        }
        for (std::size_t kh = kh0; kh < g.h.kernel; ++kh) {
            const long long ih = g.h.at(oh, kh);
            if (ih >= static_cast<long long>(g.h.in)) break;
            const T* row = plane + static_cast<std::size_t>(ih) * g.w.in;
            for (std::size_t kw = 0; kw < g.w.kernel; ++kw) {
                const auto [first, last] = columns[kw];
                const long long shift = g.w.at(0, kw);
                const T* __restrict src = row + shift;
                const auto base =
                    static_cast<std::int32_t>(ih * static_cast<long long>(g.w.in) + shift);
                for (std::size_t ow = first; ow < last; ++ow) {
                    const T v = src[ow * sw], b = best[ow];
                    const bool take = (v > b) | ((v != v) & (b == b));
                    best[ow] = take ? v : b;
                    at[ow] = take ? base + static_cast<std::int32_t>(ow * sw) : at[ow];
                }
            }
        }
    }
}

} // namespace

array max_pool2d(const array& x, const pool2d_options& options) {
    const pool_geometry g = geometry("max_pool2d", x, options);
    return k::float_dispatch("max_pool2d", x, [&](auto tag) {
        using T = decltype(tag);
        const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
        auto y_data = detail::fresh<T>({x.shape()[0], x.shape()[1], g.h.out, g.w.out});
        // Where each maximum came from (its index in the plane), for the backward pass.
        auto from_data = detail::fresh<std::int32_t>(y_data.value.shape());
        T* y = y_data.data;
        std::int32_t* from = from_data.data;
        const T* in = data<T>(x);
        // Which outputs of a row each kernel column reaches inside the image: the same for
        // every row of every plane (worked out once: it divides by the stride).
        std::vector<detail::window_axis::span> columns(g.w.kernel);
        for (std::size_t kw = 0; kw < g.w.kernel; ++kw)
            columns[kw] = g.w.inside(kw);
        k::parallel_for(g.planes, k::row_grain(in_plane), [&](std::size_t lo, std::size_t hi) {
            for (std::size_t p = lo; p < hi; ++p)
                max_plane(g, columns, in + p * in_plane, y + p * out_plane, from + p * out_plane);
        });
        const array taken = std::move(from_data.value);
        return detail::traced({"max_pool2d"}, std::move(y_data.value), {&x}, [&] {
            return [g, taken, shape = x.shape()](const array& gy, cotangent_sink& s) {
                const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
                auto dx_data = detail::fresh_zeros<T>(shape);
                T* dx = dx_data.data;
                const T* dy = data<T>(gy);
                const auto* idx = reinterpret_cast<const std::int32_t*>(taken.bytes());
                for (std::size_t p = 0; p < g.planes; ++p)
                    for (std::size_t o = 0; o < out_plane; ++o)
                        dx[p * in_plane + static_cast<std::size_t>(idx[p * out_plane + o])] +=
                            dy[p * out_plane + o];
                s.add(0, std::move(dx_data.value));
            };
        });
    });
}

array avg_pool2d(const array& x, const pool2d_options& options) {
    const pool_geometry g = geometry("avg_pool2d", x, options);
    return k::float_dispatch("avg_pool2d", x, [&](auto tag) {
        using T = decltype(tag);
        const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
        // Padding counts as zeros: every window divides by the whole kernel (PyTorch's default).
        const T scale = T{1} / static_cast<T>(g.h.kernel * g.w.kernel);
        auto y_data = detail::fresh_zeros<T>({x.shape()[0], x.shape()[1], g.h.out, g.w.out});
        T* y = y_data.data;
        const T* in = data<T>(x);
        for (std::size_t p = 0; p < g.planes; ++p)
            windows(g, [&](std::size_t oh, std::size_t ow, std::size_t ih, std::size_t iw) {
                y[p * out_plane + oh * g.w.out + ow] += in[p * in_plane + ih * g.w.in + iw] * scale;
            });
        return detail::traced({"avg_pool2d"}, std::move(y_data.value), {&x}, [&] {
            return [g, scale, shape = x.shape()](const array& gy, cotangent_sink& s) {
                const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
                auto dx_data = detail::fresh_zeros<T>(shape);
                T* dx = dx_data.data;
                const T* dy = data<T>(gy);
                for (std::size_t p = 0; p < g.planes; ++p)
                    windows(g, [&](std::size_t oh, std::size_t ow, std::size_t ih, std::size_t iw) {
                        dx[p * in_plane + ih * g.w.in + iw] +=
                            dy[p * out_plane + oh * g.w.out + ow] * scale;
                    });
                s.add(0, std::move(dx_data.value));
            };
        });
    });
}

} // namespace paramtree
