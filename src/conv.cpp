// paramtree — convolutions as matrix products (im2col), forward and backward.
#include <paramtree/conv.hpp>
#include <paramtree/ops.hpp>

#include "kernels.hpp"
#include "window.hpp"

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace paramtree {

namespace k = kernels;
using detail::cotangent_sink;

namespace {

template <class T>
const T* ptr(const array& x) {
    return reinterpret_cast<const T*>(x.bytes());
}

/// A scratch buffer of `n` elements from the buffer cache (reused step after step).
template <class T>
std::pair<array, T*> scratch(std::size_t n) {
    auto data = detail::array_access::allocate(dtype_of<T>, {n});
    return {std::move(data.first), static_cast<T*>(data.second)};
}

/// Everything about one convolution's shapes.
struct conv_geometry {
    std::size_t n, c, o, groups, cg, og; // batch, channels in/out, groups, per group
    detail::window_axis h, w;
    [[nodiscard]] std::size_t taps() const noexcept { return cg * h.kernel * w.kernel; }
    [[nodiscard]] std::size_t pixels() const noexcept { return h.out * w.out; }
    [[nodiscard]] std::size_t columns() const noexcept { return n * pixels(); }
};

conv_geometry geometry(const std::string& op, const array& x, const array& w, const array* b,
                       const conv2d_options& o) {
    const auto operands = [&] {
        return b ? k::describe_all({&x, &w, b}) : k::describe_all({&x, &w});
    };
    if (x.ndim() != 4 || w.ndim() != 4)
        detail::throw_shape(op, "x [N, C, H, W] and weight [O, C / groups, KH, KW]", operands());
    if (x.dtype() != w.dtype() || (b && b->dtype() != x.dtype()))
        detail::throw_shape(op, "operands of one float dtype", operands());
    k::float_dispatch(op, x, [](auto) { return 0; });
    conv_geometry g{};
    g.n = x.shape()[0];
    g.c = x.shape()[1];
    g.o = w.shape()[0];
    g.groups = o.groups;
    if (g.groups == 0 || g.c % g.groups != 0 || g.o % g.groups != 0)
        detail::throw_shape(op,
                            fmt::format("groups ({}) dividing the input channels and the output "
                                        "channels",
                                        g.groups),
                            operands());
    g.cg = g.c / g.groups;
    g.og = g.o / g.groups;
    if (w.shape()[1] != g.cg)
        detail::throw_shape(op, fmt::format("a weight with C / groups = {} input channels", g.cg),
                            operands());
    if (b && b->shape() != shape_type{g.o})
        detail::throw_shape(op, fmt::format("a bias of shape [{}]", g.o), operands());
    g.h = detail::make_window_axis(op, "the height", x.shape()[2], w.shape()[2], o.stride[0],
                                   o.padding[0], o.dilation[0], operands());
    g.w = detail::make_window_axis(op, "the width", x.shape()[3], w.shape()[3], o.stride[1],
                                   o.padding[1], o.dilation[1], operands());
    return g;
}

/// The windows of group `grp` as columns: col[(c, kh, kw), (n, oh, ow)], zeros in the padding.
template <class T>
void im2col(const conv_geometry& g, std::size_t grp, const T* x, T* col) {
    const std::size_t hw = g.h.in * g.w.in, cols = g.columns(), pixels = g.pixels();
    k::parallel_for(
        g.taps(), std::max<std::size_t>(1, k::parallel_grain / std::max<std::size_t>(cols, 1)),
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t row = lo; row < hi; ++row) {
                const std::size_t kw = row % g.w.kernel, kh = row / g.w.kernel % g.h.kernel;
                const std::size_t c = grp * g.cg + row / (g.w.kernel * g.h.kernel);
                T* out = col + row * cols;
                for (std::size_t n = 0; n < g.n; ++n) {
                    const T* image = x + (n * g.c + c) * hw;
                    for (std::size_t oh = 0; oh < g.h.out; ++oh) {
                        T* dst = out + n * pixels + oh * g.w.out;
                        const long long ih = g.h.at(oh, kh);
                        if (ih < 0 || ih >= static_cast<long long>(g.h.in)) {
                            std::fill(dst, dst + g.w.out, T{0});
                            continue;
                        }
                        const T* src = image + static_cast<std::size_t>(ih) * g.w.in;
                        for (std::size_t ow = 0; ow < g.w.out; ++ow) {
                            const long long iw = g.w.at(ow, kw);
                            dst[ow] = iw >= 0 && iw < static_cast<long long>(g.w.in)
                                          ? src[static_cast<std::size_t>(iw)]
                                          : T{0};
                        }
                    }
                }
            }
        });
}

/// The transpose of im2col: adds each column entry back to the input position it came from.
template <class T>
void col2im(const conv_geometry& g, std::size_t grp, const T* col, T* dx) {
    const std::size_t hw = g.h.in * g.w.in, cols = g.columns(), pixels = g.pixels();
    const std::size_t per_channel = g.h.kernel * g.w.kernel;
    // Channels are disjoint in dx: split across threads by channel.
    k::parallel_for(
        g.cg,
        std::max<std::size_t>(1, k::parallel_grain / std::max<std::size_t>(per_channel * cols, 1)),
        [&](std::size_t lo, std::size_t hi) {
            for (std::size_t cl = lo; cl < hi; ++cl)
                for (std::size_t tap = 0; tap < per_channel; ++tap) {
                    const std::size_t row = cl * per_channel + tap;
                    const std::size_t kw = tap % g.w.kernel, kh = tap / g.w.kernel;
                    const T* in = col + row * cols;
                    for (std::size_t n = 0; n < g.n; ++n) {
                        T* image = dx + (n * g.c + grp * g.cg + cl) * hw;
                        for (std::size_t oh = 0; oh < g.h.out; ++oh) {
                            const long long ih = g.h.at(oh, kh);
                            if (ih < 0 || ih >= static_cast<long long>(g.h.in)) continue;
                            T* dst = image + static_cast<std::size_t>(ih) * g.w.in;
                            const T* src = in + n * pixels + oh * g.w.out;
                            for (std::size_t ow = 0; ow < g.w.out; ++ow) {
                                const long long iw = g.w.at(ow, kw);
                                if (iw >= 0 && iw < static_cast<long long>(g.w.in))
                                    dst[static_cast<std::size_t>(iw)] += src[ow];
                            }
                        }
                    }
                }
        });
}

template <class T>
array forward(const conv_geometry& g, const array& x, const array& w, const array* b) {
    auto y_data = detail::array_access::allocate(x.dtype(), {g.n, g.o, g.h.out, g.w.out});
    array y = std::move(y_data.first);
    T* out = static_cast<T*>(y_data.second);
    const std::size_t cols = g.columns(), pixels = g.pixels(), taps = g.taps();
    const auto [col_buffer, col] = scratch<T>(taps * cols);
    const auto [prod_buffer, prod] = scratch<T>(g.og * cols);
    for (std::size_t grp = 0; grp < g.groups; ++grp) {
        im2col(g, grp, ptr<T>(x), col);
        // prod[o, (n, p)] = w_grp[o, taps] · col[taps, (n, p)]
        k::gemm(false, false, g.og, cols, taps, ptr<T>(w) + grp * g.og * taps, col, prod, T{0});
        for (std::size_t o = 0; o < g.og; ++o) {
            const std::size_t channel = grp * g.og + o;
            const T bias = b ? ptr<T>(*b)[channel] : T{0};
            for (std::size_t n = 0; n < g.n; ++n) {
                const T* src = prod + o * cols + n * pixels;
                T* dst = out + (n * g.o + channel) * pixels;
                for (std::size_t p = 0; p < pixels; ++p)
                    dst[p] = src[p] + bias;
            }
        }
    }
    return y;
}

template <class T>
void backward(const conv_geometry& g, const array& x, const array& w, bool with_bias,
              const array& gy, cotangent_sink& s) {
    const std::size_t cols = g.columns(), pixels = g.pixels(), taps = g.taps();
    const T* dy = ptr<T>(gy);
    const bool need_x = s.needs(0), need_w = s.needs(1), need_b = with_bias && s.needs(2);
    if (need_b) {
        auto db_data = detail::array_access::allocate(x.dtype(), {g.o});
        T* db = static_cast<T*>(db_data.second);
        for (std::size_t o = 0; o < g.o; ++o) {
            double total = 0;
            for (std::size_t n = 0; n < g.n; ++n)
                total += k::strided_sum(dy + (n * g.o + o) * pixels, pixels, 1);
            db[o] = static_cast<T>(total);
        }
        s.add(2, std::move(db_data.first));
    }
    if (!need_x && !need_w) return;
    std::pair<array, void*> dx_data, dw_data;
    if (need_x) {
        dx_data = detail::array_access::allocate(x.dtype(), x.shape());
        std::memset(dx_data.second, 0, x.nbytes());
    }
    if (need_w) dw_data = detail::array_access::allocate(x.dtype(), w.shape());
    const auto [dyt_buffer, dyt] = scratch<T>(g.og * cols);
    const auto [col_buffer, col] = scratch<T>(taps * cols);
    for (std::size_t grp = 0; grp < g.groups; ++grp) {
        // dyt[o, (n, p)]: this group's output cotangent laid out like the forward product.
        for (std::size_t o = 0; o < g.og; ++o)
            for (std::size_t n = 0; n < g.n; ++n)
                std::memcpy(dyt + o * cols + n * pixels, dy + (n * g.o + grp * g.og + o) * pixels,
                            pixels * sizeof(T));
        const T* wg = ptr<T>(w) + grp * g.og * taps;
        if (need_w) {
            im2col(g, grp, ptr<T>(x), col); // recomputed: cheaper than keeping it
            k::gemm(false, true, g.og, taps, cols, dyt, col,
                    static_cast<T*>(dw_data.second) + grp * g.og * taps, T{0});
        }
        if (need_x) {
            k::gemm(true, false, taps, cols, g.og, wg, dyt, col, T{0});
            col2im(g, grp, col, static_cast<T*>(dx_data.second));
        }
    }
    if (need_x) s.add(0, std::move(dx_data.first));
    if (need_w) s.add(1, std::move(dw_data.first));
}

array conv2d_impl(const std::string& op, const array& x, const array& w, const array* b,
                  const conv2d_options& options) {
    const conv_geometry g = geometry(op, x, w, b, options);
    return k::float_dispatch(op, x, [&](auto tag) {
        using T = decltype(tag);
        array y = forward<T>(g, x, w, b);
        std::vector<const array*> inputs{&x, &w};
        if (b) inputs.push_back(b);
        return detail::traced(std::move(y), detail::input_list(inputs), [&] {
            return [g, x, w, with_bias = b != nullptr](const array& gy, cotangent_sink& s) {
                backward<T>(g, x, w, with_bias, gy, s);
            };
        });
    });
}

conv2d_options as_2d(const conv1d_options& o) {
    return {{1, o.stride}, {0, o.padding}, {1, o.dilation}, o.groups};
}

void check_1d(const array& x, const array& w, const array* b) {
    if (x.ndim() != 3 || w.ndim() != 3)
        detail::throw_shape("conv1d", "x [N, C, L] and weight [O, C / groups, K]",
                            b ? k::describe_all({&x, &w, b}) : k::describe_all({&x, &w}));
}

} // namespace

array conv2d(const array& x, const array& w, const array& b, const conv2d_options& options) {
    return conv2d_impl("conv2d", x, w, &b, options);
}

array conv2d(const array& x, const array& w, const conv2d_options& options) {
    return conv2d_impl("conv2d", x, w, nullptr, options);
}

array conv1d(const array& x, const array& w, const array& b, const conv1d_options& options) {
    check_1d(x, w, &b);
    const auto& xs = x.shape();
    const auto& ws = w.shape();
    const array y = conv2d_impl("conv1d", reshape(x, {xs[0], xs[1], 1, xs[2]}),
                                reshape(w, {ws[0], ws[1], 1, ws[2]}), &b, as_2d(options));
    return reshape(y, {y.shape()[0], y.shape()[1], y.shape()[3]});
}

array conv1d(const array& x, const array& w, const conv1d_options& options) {
    check_1d(x, w, nullptr);
    const auto& xs = x.shape();
    const auto& ws = w.shape();
    const array y = conv2d_impl("conv1d", reshape(x, {xs[0], xs[1], 1, xs[2]}),
                                reshape(w, {ws[0], ws[1], 1, ws[2]}), nullptr, as_2d(options));
    return reshape(y, {y.shape()[0], y.shape()[1], y.shape()[3]});
}

} // namespace paramtree
