// paramtree — convolutions as matrix products (im2col), forward and backward.
#include <paramtree/conv.hpp>
#include <paramtree/ops.hpp>

#include "compute/kernels.hpp"
#include "compute/window.hpp"

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
using detail::data;

namespace {

/// A scratch buffer of `n` elements from the buffer cache (reused step after step).
template <class T>
detail::fresh_array<T> scratch(std::size_t n) {
    return detail::fresh<T>({n});
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

// Rows are short (an output row of a small image is 10 elements in LeNet): a call to memset
// or memmove for each, which GCC turns these loops into, cost more than the copy itself, so it
// is told not to for the two functions that copy rows.
#if defined(__GNUC__) && !defined(__clang__)
#define PT_NO_MEMCALLS [[gnu::optimize("no-tree-loop-distribute-patterns")]]
#else
#define PT_NO_MEMCALLS
#endif

/// Images [n0, n1) of the batch: the unit im2col and the products work on, sized so that its
/// columns stay in the core's cache (the whole batch's columns of a LeNet layer are 3.8 MB:
/// written out and read back they cost more than the products).
struct chunk {
    std::size_t n0, n1;
    [[nodiscard]] std::size_t images() const noexcept { return n1 - n0; }
};

std::size_t images_per_chunk(const conv_geometry& g, std::size_t element_size) {
    constexpr std::size_t target = std::size_t{256} << 10;
    const std::size_t per_image = g.taps() * g.pixels() * element_size;
    return std::max<std::size_t>(1, target / std::max<std::size_t>(per_image, 1));
}

/// The windows of group `grp` over the chunk's images as columns:
/// col[(c, kh, kw), (n - n0, oh, ow)], zeros in the padding.
template <class T>
PT_NO_MEMCALLS void im2col(const conv_geometry& g, std::size_t grp, chunk ch, const T* x, T* col) {
    const std::size_t hw = g.h.in * g.w.in, pixels = g.pixels(), cols = ch.images() * pixels;
    const std::size_t ow_n = g.w.out, sw = g.w.stride;
    for (std::size_t row = 0; row < g.taps(); ++row) {
        const std::size_t kw = row % g.w.kernel, kh = row / g.w.kernel % g.h.kernel;
        const std::size_t c = grp * g.cg + row / (g.w.kernel * g.h.kernel);
        const auto [first, last] = g.w.inside(kw); // the same for every image row
        const long long shift = g.w.at(0, kw);
        T* out = col + row * cols;
        for (std::size_t n = ch.n0; n < ch.n1; ++n) {
            const T* image = x + (n * g.c + c) * hw;
            for (std::size_t oh = 0; oh < g.h.out; ++oh) {
                T* __restrict dst = out + (n - ch.n0) * pixels + oh * ow_n;
                const long long ih = g.h.at(oh, kh);
                if (ih < 0 || ih >= static_cast<long long>(g.h.in)) {
                    for (std::size_t ow = 0; ow < ow_n; ++ow)
                        dst[ow] = T{0};
                    continue;
                }
                const T* __restrict src = image + static_cast<std::size_t>(ih) * g.w.in + shift;
                for (std::size_t ow = 0; ow < first; ++ow)
                    dst[ow] = T{0};
                if (sw == 1) {
                    for (std::size_t ow = first; ow < last; ++ow)
                        dst[ow] = src[ow];
                } else {
                    for (std::size_t ow = first; ow < last; ++ow)
                        dst[ow] = src[ow * sw];
                }
                for (std::size_t ow = last; ow < ow_n; ++ow)
                    dst[ow] = T{0};
            }
        }
    }
}

/// The transpose of im2col: adds each column entry back to the input position it came from.
template <class T>
PT_NO_MEMCALLS void col2im(const conv_geometry& g, std::size_t grp, chunk ch, const T* col, T* dx) {
    const std::size_t hw = g.h.in * g.w.in, pixels = g.pixels(), cols = ch.images() * pixels;
    const std::size_t per_channel = g.h.kernel * g.w.kernel;
    for (std::size_t cl = 0; cl < g.cg; ++cl)
        for (std::size_t tap = 0; tap < per_channel; ++tap) {
            const std::size_t row = cl * per_channel + tap;
            const std::size_t kw = tap % g.w.kernel, kh = tap / g.w.kernel;
            const auto [first, last] = g.w.inside(kw);
            const long long shift = g.w.at(0, kw);
            const T* in = col + row * cols;
            for (std::size_t n = ch.n0; n < ch.n1; ++n) {
                T* image = dx + (n * g.c + grp * g.cg + cl) * hw;
                for (std::size_t oh = 0; oh < g.h.out; ++oh) {
                    const long long ih = g.h.at(oh, kh);
                    if (ih < 0 || ih >= static_cast<long long>(g.h.in)) continue;
                    T* dst = image + static_cast<std::size_t>(ih) * g.w.in;
                    const T* src = in + (n - ch.n0) * pixels + oh * g.w.out;
                    for (std::size_t ow = first; ow < last; ++ow)
                        dst[static_cast<long long>(ow * g.w.stride) + shift] += src[ow];
                }
            }
        }
}

/// Runs `body(chunk, scratch...)` over the batch's chunks, in parallel when there are cores
/// to spare: chunks touch disjoint images, and each thread has its own scratch buffers.
template <class T, class Body>
void for_each_chunk(const conv_geometry& g, Body&& body) {
    const std::size_t per = images_per_chunk(g, sizeof(T));
    const std::size_t chunks = (g.n + per - 1) / per;
    k::parallel_for(chunks, 1, [&](std::size_t lo, std::size_t hi) {
        const std::size_t cols = per * g.pixels();
        const auto [col_buffer, col] = scratch<T>(g.taps() * cols);
        const auto [prod_buffer, prod] = scratch<T>(g.og * cols);
        for (std::size_t c = lo; c < hi; ++c)
            body(chunk{c * per, std::min(g.n, (c + 1) * per)}, col, prod);
    });
}

/// Where chunk `ch`'s columns of group `grp` sit in the columns kept for backward: one block
/// of taps x (images x pixels) per group and chunk, chunks in batch order.
std::size_t kept_offset(const conv_geometry& g, std::size_t grp, chunk ch) {
    return g.taps() * (grp * g.columns() + ch.n0 * g.pixels());
}

/// y = conv(x, w) + b. With `kept` (the weight is being differentiated) the columns are
/// written there and kept for the weight's gradient instead of being built a second time in
/// backward: PyTorch's im2col path keeps them too. They are taps times the size of x.
template <class T>
array forward(const conv_geometry& g, const array& x, const array& w, const array* b, T* kept) {
    auto y_data = detail::fresh<T>({g.n, g.o, g.h.out, g.w.out});
    T* out = y_data.data;
    const std::size_t pixels = g.pixels(), taps = g.taps();
    for_each_chunk<T>(g, [&](chunk ch, T* scratch_col, T* prod) {
        const std::size_t cols = ch.images() * pixels;
        for (std::size_t grp = 0; grp < g.groups; ++grp) {
            T* col = kept ? kept + kept_offset(g, grp, ch) : scratch_col;
            im2col(g, grp, ch, data<T>(x), col);
            // prod[o, (n, p)] = w_grp[o, taps] · col[taps, (n, p)]
            k::gemm(false, false, g.og, cols, taps, data<T>(w) + grp * g.og * taps, col, prod,
                    T{0});
            for (std::size_t o = 0; o < g.og; ++o) {
                const std::size_t channel = grp * g.og + o;
                const T bias = b ? data<T>(*b)[channel] : T{0};
                for (std::size_t n = ch.n0; n < ch.n1; ++n) {
                    const T* src = prod + o * cols + (n - ch.n0) * pixels;
                    T* dst = out + (n * g.o + channel) * pixels;
                    for (std::size_t p = 0; p < pixels; ++p)
                        dst[p] = src[p] + bias;
                }
            }
        }
    });
    return std::move(y_data.value);
}

template <class T>
void backward(const conv_geometry& g, const array& x, const array& w, bool with_bias,
              const array& kept, const array& gy, cotangent_sink& s) {
    const std::size_t pixels = g.pixels(), taps = g.taps();
    const T* dy = data<T>(gy);
    const bool need_x = s.needs(0), need_w = s.needs(1), need_b = with_bias && s.needs(2);
    if (need_b) {
        auto db_data = detail::fresh<T>({g.o});
        T* db = db_data.data;
        for (std::size_t o = 0; o < g.o; ++o) {
            double total = 0;
            for (std::size_t n = 0; n < g.n; ++n)
                total += k::strided_sum(dy + (n * g.o + o) * pixels, pixels, 1);
            db[o] = static_cast<T>(total);
        }
        s.add(2, std::move(db_data.value));
    }
    if (!need_x && !need_w) return;
    detail::fresh_array<T> dx_data{array{}, nullptr}, dw_data{array{}, nullptr};
    if (need_x) dx_data = detail::fresh_zeros<T>(x.shape());
    if (need_w) dw_data = detail::fresh_zeros<T>(w.shape());
    // The weight's gradient sums over chunks: in order, on one thread, so it is the same on
    // every run whatever the thread count (chunks are processed serially here).
    const std::size_t per = images_per_chunk(g, sizeof(T));
    const std::size_t cols_max = per * pixels;
    const auto [dyt_buffer, dyt] = scratch<T>(g.og * cols_max);
    const auto [col_buffer, col] = scratch<T>(taps * cols_max);
    for (std::size_t n0 = 0; n0 < g.n; n0 += per) {
        const chunk ch{n0, std::min(g.n, n0 + per)};
        const std::size_t cols = ch.images() * pixels;
        for (std::size_t grp = 0; grp < g.groups; ++grp) {
            // dyt[o, (n, p)]: this group's output cotangent laid out like the forward product.
            for (std::size_t o = 0; o < g.og; ++o)
                for (std::size_t n = ch.n0; n < ch.n1; ++n)
                    std::memcpy(dyt + o * cols + (n - ch.n0) * pixels,
                                dy + (n * g.o + grp * g.og + o) * pixels, pixels * sizeof(T));
            const T* wg = data<T>(w) + grp * g.og * taps;
            if (need_w) {
                const T* columns = data<T>(kept) + kept_offset(g, grp, ch);
                k::gemm(false, true, g.og, taps, cols, dyt, columns,
                        dw_data.data + grp * g.og * taps, T{1});
            }
            if (need_x) {
                k::gemm(true, false, taps, cols, g.og, wg, dyt, col, T{0});
                col2im(g, grp, ch, col, dx_data.data);
            }
        }
    }
    if (need_x) s.add(0, std::move(dx_data.value));
    if (need_w) s.add(1, std::move(dw_data.value));
}

array conv2d_impl(const std::string& op, const array& x, const array& w, const array* b,
                  const conv2d_options& options) {
    const conv_geometry g = geometry(op, x, w, b, options);
    return k::float_dispatch(op, x, [&](auto tag) {
        using T = decltype(tag);
        detail::fresh_array<T> kept{array{}, nullptr};
        if (w.trace()) kept = scratch<T>(g.groups * g.taps() * g.columns());
        array y = forward<T>(g, x, w, b, kept.data);
        std::vector<const array*> inputs{&x, &w};
        if (b) inputs.push_back(b);
        // A first-order rule only (named, so differentiating through it again says so).
        const char* name = op == "conv1d" ? "conv1d" : "conv2d";
        return detail::traced({name}, std::move(y), detail::input_list(inputs), [&] {
            return [g, x, w, with_bias = b != nullptr,
                    columns = std::move(kept.value)](const array& gy, cotangent_sink& s) {
                backward<T>(g, x, w, with_bias, columns, gy, s);
            };
        });
    });
}

/// conv1d as a conv2d over a height of 1: x [N, C, L] and w [O, C/g, K] seen as [N, C, 1, L]
/// and [O, C/g, 1, K] (views, traced like any reshape), the result seen back as [N, O, L'].
array conv1d_impl(const array& x, const array& w, const array* b, const conv1d_options& o) {
    if (x.ndim() != 3 || w.ndim() != 3)
        detail::throw_shape("conv1d", "x [N, C, L] and weight [O, C / groups, K]",
                            b ? k::describe_all({&x, &w, b}) : k::describe_all({&x, &w}));
    const auto& xs = x.shape();
    const auto& ws = w.shape();
    const array y = conv2d_impl("conv1d", reshape(x, {xs[0], xs[1], 1, xs[2]}),
                                reshape(w, {ws[0], ws[1], 1, ws[2]}), b,
                                {{1, o.stride}, {0, o.padding}, {1, o.dilation}, o.groups});
    return reshape(y, {y.shape()[0], y.shape()[1], y.shape()[3]});
}

} // namespace

array conv2d(const array& x, const array& w, const array& b, const conv2d_options& options) {
    return conv2d_impl("conv2d", x, w, &b, options);
}

array conv2d(const array& x, const array& w, const conv2d_options& options) {
    return conv2d_impl("conv2d", x, w, nullptr, options);
}

array conv1d(const array& x, const array& w, const array& b, const conv1d_options& options) {
    return conv1d_impl(x, w, &b, options);
}

array conv1d(const array& x, const array& w, const conv1d_options& options) {
    return conv1d_impl(x, w, nullptr, options);
}

} // namespace paramtree
