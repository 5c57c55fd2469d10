// paramtree — max and average pooling over NCHW images, forward and backward.
#include <paramtree/pool.hpp>

#include "kernels.hpp"
#include "window.hpp"

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <fmt/format.h>

namespace paramtree {

namespace k = kernels;
using detail::cotangent_sink;

namespace {

template <class T>
const T* ptr(const array& x) {
    return reinterpret_cast<const T*>(x.bytes());
}

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

} // namespace

array max_pool2d(const array& x, const pool2d_options& options) {
    const pool_geometry g = geometry("max_pool2d", x, options);
    return k::float_dispatch("max_pool2d", x, [&](auto tag) {
        using T = decltype(tag);
        const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
        auto y_data = detail::array_access::allocate(
            x.dtype(), {x.shape()[0], x.shape()[1], g.h.out, g.w.out});
        // Where each maximum came from (its index in the plane), for the backward pass.
        auto from_data = detail::array_access::allocate(dtype::int32, y_data.first.shape());
        T* y = static_cast<T*>(y_data.second);
        auto* from = static_cast<std::int32_t*>(from_data.second);
        const T* in = ptr<T>(x);
        k::parallel_for(
            g.planes,
            std::max<std::size_t>(1, k::parallel_grain / std::max<std::size_t>(in_plane, 1)),
            [&](std::size_t lo, std::size_t hi) {
                for (std::size_t p = lo; p < hi; ++p) {
                    T* out = y + p * out_plane;
                    std::int32_t* idx = from + p * out_plane;
                    for (std::size_t i = 0; i < out_plane; ++i) {
                        out[i] = -std::numeric_limits<T>::infinity();
                        idx[i] = -1;
                    }
                    const T* plane = in + p * in_plane;
                    windows(g, [&](std::size_t oh, std::size_t ow, std::size_t ih, std::size_t iw) {
                        const std::size_t o = oh * g.w.out + ow, i = ih * g.w.in + iw;
                        // The first largest wins; the first NaN wins over numbers (as in PyTorch).
                        const bool nan_here = std::isnan(plane[i]) && !std::isnan(out[o]);
                        if (idx[o] < 0 || plane[i] > out[o] || nan_here) {
                            out[o] = plane[i];
                            idx[o] = static_cast<std::int32_t>(i);
                        }
                    });
                }
            });
        const array taken = std::move(from_data.first);
        return detail::traced(std::move(y_data.first), {&x}, [&] {
            return
                [g, taken, shape = x.shape(), dt = x.dtype()](const array& gy, cotangent_sink& s) {
                    const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
                    auto dx_data = detail::array_access::allocate(dt, shape);
                    T* dx = static_cast<T*>(dx_data.second);
                    std::memset(dx, 0, g.planes * in_plane * sizeof(T));
                    const T* dy = ptr<T>(gy);
                    const auto* idx = reinterpret_cast<const std::int32_t*>(taken.bytes());
                    for (std::size_t p = 0; p < g.planes; ++p)
                        for (std::size_t o = 0; o < out_plane; ++o)
                            dx[p * in_plane + static_cast<std::size_t>(idx[p * out_plane + o])] +=
                                dy[p * out_plane + o];
                    s.add(0, std::move(dx_data.first));
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
        auto y_data = detail::array_access::allocate(
            x.dtype(), {x.shape()[0], x.shape()[1], g.h.out, g.w.out});
        T* y = static_cast<T*>(y_data.second);
        const T* in = ptr<T>(x);
        std::memset(y, 0, g.planes * out_plane * sizeof(T));
        for (std::size_t p = 0; p < g.planes; ++p)
            windows(g, [&](std::size_t oh, std::size_t ow, std::size_t ih, std::size_t iw) {
                y[p * out_plane + oh * g.w.out + ow] += in[p * in_plane + ih * g.w.in + iw] * scale;
            });
        return detail::traced(std::move(y_data.first), {&x}, [&] {
            return [g, scale, shape = x.shape(), dt = x.dtype()](const array& gy,
                                                                 cotangent_sink& s) {
                const std::size_t in_plane = g.h.in * g.w.in, out_plane = g.h.out * g.w.out;
                auto dx_data = detail::array_access::allocate(dt, shape);
                T* dx = static_cast<T*>(dx_data.second);
                std::memset(dx, 0, g.planes * in_plane * sizeof(T));
                const T* dy = ptr<T>(gy);
                for (std::size_t p = 0; p < g.planes; ++p)
                    windows(g, [&](std::size_t oh, std::size_t ow, std::size_t ih, std::size_t iw) {
                        dx[p * in_plane + ih * g.w.in + iw] +=
                            dy[p * out_plane + oh * g.w.out + ow] * scale;
                    });
                s.add(0, std::move(dx_data.first));
            };
        });
    });
}

} // namespace paramtree
