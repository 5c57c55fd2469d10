// paramtree — fused scaled dot-product attention (see <paramtree/attention.hpp>).
#include <paramtree/attention.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/detail/tape.hpp>

#include "compute/kernels.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

namespace paramtree {

namespace k = kernels;
using detail::data;

namespace {

/// Where the heads are in memory: row r of head h of batch b starts at
/// base + b·T·D + r·D + h·dh, and rows are D apart (the `ld` of every product).
struct attention_shape {
    std::size_t batch, t, s, d, heads, dh;
    bool causal;
    double scale;
};

/// `row(r, scale)` for every row r of the [B, H, T, S] scores (r % T is its query position):
/// rows split across threads (enough elements each to pay for waking one), compiled for the
/// active ISA. `row` must be a PT_INLINE lambda to be vectorised with it.
template <class T, class Row>
void each_score_row(const attention_shape& a, Row&& row) {
    const auto part = [&](std::size_t lo, std::size_t hi) {
        k::vectorized((hi - lo) * a.s, [&]() PT_INLINE {
            // A local, not a captured reference: a float the row's stores might alias would be
            // reloaded after every store, which keeps the loops scalar.
            const T scale = static_cast<T>(a.scale);
            for (std::size_t r = lo; r < hi; ++r)
                row(r, scale);
        });
    };
    k::parallel_for(a.batch * a.heads * a.t, k::row_grain(a.s), part);
}

/// The layout of the heads as a batch of products (see kernels::batch_strides): [B, H] heads of
/// q (and of the output, dq), of k and v (dk, dv), and of the [B, H, T, S] scores.
struct head_layout {
    std::array<std::size_t, 2> q, kv, scores;
};
head_layout heads_of(const attention_shape& a) {
    return {{a.t * a.d, a.dh}, {a.s * a.d, a.dh}, {a.heads * a.t * a.s, a.t * a.s}};
}
k::batch_strides batch(const attention_shape& a, const std::array<std::size_t, 2>& x,
                       const std::array<std::size_t, 2>& y, const std::array<std::size_t, 2>& c) {
    return {a.batch, a.heads, x, y, c};
}

template <class T>
[[gnu::always_inline]] inline T exp_of(T x) {
    if constexpr (std::is_same_v<T, float>) return k::exp_f32(x);
    return std::exp(x);
}

/// Forward: out (q's shape) and the softmax probabilities p [B, H, T, S] kept for backward.
/// The heads are read in place (rows D apart, the `ld` of every product), all heads' products
/// in one batched call, the mask applied while the softmax runs.
template <class T>
void forward(const attention_shape& a, const T* q, const T* kk, const T* v, T* out, T* p) {
    const head_layout h = heads_of(a);
    // Scores: q_h k_hᵀ for every head.
    k::gemm_batched(false, true, a.t, a.s, a.dh, q, a.d, kk, a.d, p, a.s, T{0},
                    batch(a, h.q, h.kv, h.scores));
    each_score_row<T>(a, [&](std::size_t r, const T scale) PT_INLINE {
        T* row = p + r * a.s;
        const std::size_t i = r % a.t;
        // Causal: row i sees columns 0..i (top-left aligned, as PyTorch's is_causal).
        const std::size_t visible = a.causal ? std::min(a.s, i + 1) : a.s;
        if (visible == 0) {
            std::fill(row, row + a.s, T{0});
            return;
        }
        const T mx =
            k::lane_max<T>(visible, [&](std::size_t j) PT_INLINE { return row[j] * scale; });
        // The exponentials and their sum in one vectorised pass.
        const T inv = static_cast<T>(1.0 / k::lane_sum(visible, [&](std::size_t j) PT_INLINE {
                                         row[j] = exp_of<T>(row[j] * scale - mx);
                                         return static_cast<double>(row[j]);
                                     }));
        for (std::size_t c = 0; c < visible; ++c)
            row[c] *= inv;
        std::fill(row + visible, row + a.s, T{0});
    });
    // out_h = p v_h, written in place into the merged [T, D] rows.
    k::gemm_batched(false, false, a.t, a.dh, a.s, p, a.s, v, a.d, out, a.d, T{0},
                    batch(a, h.scores, h.kv, h.q));
}

/// Backward: dq, dk, dv (each with its input's shape) from the cotangent g of the output;
/// `ds` is [B, H, T, S] scratch.
template <class T>
void backward(const attention_shape& a, const T* q, const T* kk, const T* v, const T* p, const T* g,
              T* dq, T* dk, T* dv, T* ds) {
    const head_layout h = heads_of(a);
    // dv_h = pᵀ g_h
    if (dv)
        k::gemm_batched(true, false, a.s, a.dh, a.t, p, a.s, g, a.d, dv, a.d, T{0},
                        batch(a, h.scores, h.q, h.kv));
    if (!dq && !dk) return;
    // dp = g_h v_hᵀ, then the softmax gradient ds = p (dp - rowsum(dp p)), scaled.
    k::gemm_batched(false, true, a.t, a.s, a.dh, g, a.d, v, a.d, ds, a.s, T{0},
                    batch(a, h.q, h.kv, h.scores));
    each_score_row<T>(a, [&](std::size_t r, const T scale) PT_INLINE {
        T* row = ds + r * a.s;
        const T* pr = p + r * a.s;
        const T c = static_cast<T>(k::lane_sum(a.s, [&](std::size_t j) PT_INLINE {
            return static_cast<double>(row[j]) * static_cast<double>(pr[j]);
        }));
        for (std::size_t j = 0; j < a.s; ++j)
            row[j] = pr[j] * (row[j] - c) * scale; // 0 where masked (p = 0)
    });
    // dq_h = ds k_h, dk_h = dsᵀ q_h
    if (dq)
        k::gemm_batched(false, false, a.t, a.dh, a.s, ds, a.s, kk, a.d, dq, a.d, T{0},
                        batch(a, h.scores, h.kv, h.q));
    if (dk)
        k::gemm_batched(true, false, a.s, a.dh, a.t, ds, a.s, q, a.d, dk, a.d, T{0},
                        batch(a, h.scores, h.q, h.kv));
}

} // namespace

namespace {
/// The same attention written with recorded operations: its differentiable backward (for a
/// gradient that is differentiated again) is the sweep of this recording.
array composed_attention(const array& q, const array& k, const array& v, const attention_shape& a) {
    const bool batched = q.ndim() == 3;
    auto heads = [&](const array& x, std::size_t len) { // [B, L, H*dh] -> [B, H, L, dh]
        return transpose(x.reshape({a.batch, len, a.heads, a.dh}), {0, 2, 1, 3});
    };
    const array qh = heads(q, a.t), kh = heads(k, a.s), vh = heads(v, a.s);
    array scores = matmul(qh, swapaxes(kh, -1, -2)) * a.scale;
    if (a.causal) {
        std::vector<bool> keep(a.t * a.s);
        for (std::size_t i = 0; i < a.t; ++i)
            for (std::size_t j = 0; j < a.s; ++j)
                keep[i * a.s + j] = j <= i;
        const array mask = array::from_vector<bool>({a.t, a.s}, std::move(keep));
        scores = where(mask, scores, array::full({}, -1e30, scores.dtype()));
    }
    const array out = matmul(softmax(scores, -1), vh); // [B, H, T, dh]
    const array merged = transpose(out, {0, 2, 1, 3}).reshape({a.batch, a.t, a.d});
    return batched ? merged : merged.reshape({a.t, a.d});
}
} // namespace

array scaled_dot_product_attention(const array& q, const array& k, const array& v,
                                   std::size_t heads, const attention_options& options) {
    const bool ranks_ok =
        (q.ndim() == 2 || q.ndim() == 3) && k.ndim() == q.ndim() && v.ndim() == q.ndim();
    const bool dtypes_ok =
        q.dtype() == k.dtype() && q.dtype() == v.dtype() && is_inexact(q.dtype());
    const std::size_t r = q.ndim();
    const bool shapes_ok = ranks_ok && dtypes_ok && k.shape() == v.shape() &&
                           q.shape().back() == k.shape().back() &&
                           (r == 2 || q.shape()[0] == k.shape()[0]);
    const std::size_t d = r ? q.shape().back() : 0;
    if (!shapes_ok || heads == 0 || d % heads != 0)
        detail::throw_shape("scaled_dot_product_attention",
                            fmt::format("q [B, T, D], k and v [B, S, D] (or without B) of one "
                                        "float dtype, with D divisible by heads = {}",
                                        heads),
                            k::describe_all({&q, &k, &v}));
    attention_shape a{r == 3 ? q.shape()[0] : 1,
                      q.shape()[r - 2],
                      k.shape()[r - 2],
                      d,
                      heads,
                      d / heads,
                      options.causal,
                      options.scale};
    if (a.scale == 0) a.scale = a.dh == 0 ? 1.0 : 1.0 / std::sqrt(static_cast<double>(a.dh));
    return k::float_dispatch("scaled_dot_product_attention", q, [&](auto tag) {
        using T = decltype(tag);
        auto out = detail::fresh<T>(q.shape());
        auto probs = detail::fresh<T>({a.batch, a.heads, a.t, a.s});
        array p = std::move(probs.value);
        forward<T>(a, data<T>(q), data<T>(k), data<T>(v), out.data, probs.data);
        return detail::traced(
            {"scaled_dot_product_attention", true}, std::move(out.value), {&q, &k, &v}, [&] {
                return [a, q, k, v, p](const array& g, detail::cotangent_sink& s) {
                    if (s.differentiable()) {
                        detail::composed_vjp(s, {q, k, v}, g, [a](const std::vector<array>& in) {
                            return composed_attention(in[0], in[1], in[2], a);
                        });
                        return;
                    }
                    auto grad = [&](std::size_t i, const array& like) {
                        return s.needs(i) ? detail::fresh<T>(like.shape())
                                          : detail::fresh_array<T>{array{}, nullptr};
                    };
                    auto dq = grad(0, q), dk = grad(1, k), dv = grad(2, v);
                    auto ds = detail::fresh<T>(p.shape());
                    backward<T>(a, data<T>(q), data<T>(k), data<T>(v), data<T>(p), data<T>(g),
                                dq.data, dk.data, dv.data, ds.data);
                    if (dq.data) s.add(0, std::move(dq.value));
                    if (dk.data) s.add(1, std::move(dk.value));
                    if (dv.data) s.add(2, std::move(dv.value));
                };
            });
    });
}

} // namespace paramtree
