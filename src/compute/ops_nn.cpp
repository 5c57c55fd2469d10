// paramtree — differentiable matmul, gathers, masks and the fused neural-network operations
// (softmax family, cross-entropy, layer norm, dropout). Fused operations compute their
// backward in one pass from values saved by the forward, instead of a chain of small ops.
#include <paramtree/ops.hpp>

#include "compute/kernels.hpp"
#include "compute/rule_ops.hpp"

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

namespace k = kernels;
using detail::cotangent_sink;
using detail::data;
using detail::traced;

namespace {
std::size_t product(const shape_type& s, std::size_t from, std::size_t to) {
    std::size_t n = 1;
    for (std::size_t i = from; i < to; ++i)
        n *= s[i];
    return n;
}
} // namespace

// ---- concatenate ---------------------------------------------------------------------------

namespace {
/// Elements [begin, begin + count) of `g` along `axis`, as recorded operations (the axis moved
/// to the front, its rows taken, moved back): the differentiable form of concatenate's rule.
array slice_along(const array& g, std::size_t axis, std::size_t begin, std::size_t count) {
    std::vector<int> perm{static_cast<int>(axis)};
    for (std::size_t d = 0; d < g.ndim(); ++d)
        if (d != axis) perm.push_back(static_cast<int>(d));
    std::vector<int> back(perm.size());
    for (std::size_t d = 0; d < perm.size(); ++d)
        back[static_cast<std::size_t>(perm[d])] = static_cast<int>(d);
    std::vector<std::int64_t> rows(count);
    for (std::size_t r = 0; r < count; ++r)
        rows[r] = static_cast<std::int64_t>(begin + r);
    const array picked =
        take(transpose(g, perm), array::from_vector<std::int64_t>({count}, std::move(rows)));
    return transpose(picked, back);
}
} // namespace

array concatenate(const std::vector<array>& xs, int axis) {
    if (xs.empty()) detail::throw_shape("concatenate", "at least one array", "an empty list");
    const array& first = xs.front();
    const std::size_t ax = k::normalize_axes("concatenate", first, {axis})[0];
    shape_type shape = first.shape();
    shape[ax] = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const array& x = xs[i];
        bool ok = x.dtype() == first.dtype() && x.ndim() == first.ndim();
        for (std::size_t d = 0; ok && d < x.ndim(); ++d)
            ok = d == ax || x.shape()[d] == first.shape()[d];
        if (!ok)
            detail::throw_shape(
                "concatenate",
                fmt::format("arrays like {} except along axis {}", first.describe(), ax),
                fmt::format("{} at position {}", x.describe(), i));
        shape[ax] += x.shape()[ax];
    }
    const std::size_t outer = product(shape, 0, ax);
    const std::size_t inner = product(shape, ax + 1, shape.size());
    const std::size_t esize = dtype_size(first.dtype());
    auto out_data = detail::fresh_bytes(first.dtype(), shape);
    array out = std::move(out_data.value);
    auto* dst = out_data.data;
    const std::size_t row = shape[ax] * inner * esize;
    std::size_t at = 0;
    std::vector<std::size_t> widths;
    for (const array& x : xs) {
        const std::size_t w = x.shape()[ax] * inner * esize;
        for (std::size_t o = 0; o < outer; ++o)
            std::copy_n(x.bytes() + o * w, w, dst + o * row + at);
        at += w;
        widths.push_back(x.shape()[ax]);
    }
    std::vector<const array*> inputs;
    for (const array& x : xs)
        inputs.push_back(&x);
    return traced({"concatenate", true}, out, detail::input_list(inputs), [&] {
        return [widths, shape, ax, outer, inner, esize](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                std::size_t begin = 0;
                for (std::size_t i = 0; i < widths.size(); begin += widths[i++])
                    if (s.needs(i)) s.add(i, slice_along(g, ax, begin, widths[i]));
                return;
            }
            const std::size_t grow = shape[ax] * inner * esize;
            std::size_t from = 0;
            for (std::size_t i = 0; i < widths.size(); ++i) {
                const std::size_t w = widths[i] * inner * esize;
                if (s.needs(i)) {
                    shape_type part = shape;
                    part[ax] = widths[i];
                    auto gi_gd = detail::fresh_bytes(g.dtype(), part);
                    array gi = std::move(gi_gd.value);
                    auto* p = gi_gd.data;
                    for (std::size_t o = 0; o < outer; ++o)
                        std::copy_n(g.bytes() + o * grow + from, w, p + o * w);
                    s.add(i, gi);
                }
                from += w;
            }
        };
    });
}

// ---- take (embedding lookup) ---------------------------------------------------------------

namespace {
/// The (constant) one-hot rows of `idx` over `classes`, [idx.size(), classes], in `d`: what
/// the differentiable rules of take and cross_entropy multiply by.
array one_hot(const std::vector<std::int64_t>& idx, std::size_t classes, dtype d) {
    std::vector<double> hot(idx.size() * classes, 0.0);
    for (std::size_t i = 0; i < idx.size(); ++i)
        hot[i * classes + static_cast<std::size_t>(idx[i])] = 1.0;
    return array::from_vector<double>({idx.size(), classes}, std::move(hot)).astype(d);
}
} // namespace

namespace {
/// The indices as int64, checked against [0, rows).
std::vector<std::int64_t> checked_indices(const char* op, const array& indices, std::size_t rows) {
    if (indices.dtype() != dtype::int32 && indices.dtype() != dtype::int64)
        detail::throw_shape(op, "int32 or int64 indices", indices.describe());
    std::vector<std::int64_t> idx(indices.size());
    detail::dispatch(indices.dtype(), [&](auto tag) {
        using I = decltype(tag);
        const auto* p = reinterpret_cast<const I*>(indices.bytes());
        for (std::size_t i = 0; i < idx.size(); ++i)
            idx[i] = static_cast<std::int64_t>(p[i]);
    });
    for (std::size_t i = 0; i < idx.size(); ++i)
        if (idx[i] < 0 || static_cast<std::size_t>(idx[i]) >= rows)
            detail::throw_shape(op, fmt::format("indices in [0, {})", rows),
                                fmt::format("{} at flat position {}", idx[i], i));
    return idx;
}
} // namespace

array take(const array& table, const array& indices) {
    if (table.ndim() == 0) detail::throw_shape("take", "a table of rank >= 1", table.describe());
    const std::size_t rows = table.shape()[0];
    const auto idx = checked_indices("take", indices, rows);
    shape_type shape = indices.shape();
    shape.insert(shape.end(), table.shape().begin() + 1, table.shape().end());
    const std::size_t width = product(table.shape(), 1, table.ndim());
    const std::size_t row_bytes = width * dtype_size(table.dtype());
    auto out_data = detail::fresh_bytes(table.dtype(), shape);
    array out = std::move(out_data.value);
    auto* dst = out_data.data;
    for (std::size_t i = 0; i < idx.size(); ++i)
        std::copy_n(table.bytes() + static_cast<std::size_t>(idx[i]) * row_bytes, row_bytes,
                    dst + i * row_bytes);
    return traced({"take", true}, out, {&table}, [&] {
        return [idx, tshape = table.shape(), width](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                // The scatter-add as a product with the (constant) one-hot matrix of the
                // indices: linear in g, so recorded through matmul.
                const array onehot = one_hot(idx, tshape[0], g.dtype());
                s.add(0, matmul(transpose(onehot), g.reshape({idx.size(), width})).reshape(tshape));
                return;
            }
            // Scatter-add: a row used twice gets both contributions.
            s.add(0, k::float_dispatch("take", g, [&](auto tag) {
                      using T = decltype(tag);
                      auto gt_gd = detail::fresh<T>(tshape);
                      array gt = std::move(gt_gd.value);
                      auto* acc = gt_gd.data;
                      std::fill_n(acc, gt.size(), T{0});
                      const auto* gv = detail::data<T>(g);
                      for (std::size_t i = 0; i < idx.size(); ++i) {
                          T* row = acc + static_cast<std::size_t>(idx[i]) * width;
                          const T* from = gv + i * width;
                          for (std::size_t j = 0; j < width; ++j)
                              row[j] += from[j];
                      }
                      return gt;
                  }));
        };
    });
}

// ---- where ---------------------------------------------------------------------------------

array where(const array& mask, const array& a, const array& b) {
    if (mask.dtype() != dtype::boolean)
        detail::throw_shape("where", "a bool mask", mask.describe());
    k::check_same_dtype("where", {&a, &b});
    const auto shape = k::broadcast_shapes("where", {&mask, &a, &b});
    return traced({"where", true}, k::select(mask, a, b, shape), {&a, &b}, [&] {
        return [mask, sa = a.shape(), sb = b.shape(), shape](const array& g, cotangent_sink& s) {
            const detail::rule_ops o(s);
            const array zero = array::zeros({}, g.dtype());
            if (s.needs(0)) s.add(0, o.sum_to(o.select(mask, g, zero, shape), sa));
            if (s.needs(1)) s.add(1, o.sum_to(o.select(mask, zero, g, shape), sb));
        };
    });
}

// ---- matmul --------------------------------------------------------------------------------

namespace {
[[noreturn]] void throw_matmul(const array& a, const array& b) {
    detail::throw_shape("matmul", "[..., m, k] and [..., k, n] float arrays of one dtype",
                        k::describe_all({&a, &b}));
}

/// Batched product of equal-batch operands: c[i] = op(a[i]) op(b[i]) over `batch` slices.
template <class T>
array batched(const array& a, const array& b, bool ta, bool tb, std::size_t batch, std::size_t m,
              std::size_t n, std::size_t kk, shape_type out_shape) {
    auto out_data = detail::fresh<T>(std::move(out_shape));
    array out = std::move(out_data.value);
    auto* c = out_data.data;
    k::gemm_batched(ta, tb, m, n, kk, data<T>(a), ta ? m : kk, data<T>(b), tb ? kk : n, c, n, T{0},
                    {1, batch, {0, m * kk}, {0, kk * n}, {0, m * n}});
    return out;
}
} // namespace

namespace {
/// matmul's backward as recorded operations (for a gradient that is differentiated again):
/// dA = G Bᵀ and dB = Aᵀ G, summed over broadcast batch axes.
void matmul_graph_rule(const array& a, const array& b, const array& g, cotangent_sink& s) {
    if (s.needs(0)) s.add(0, detail::sum_to(matmul(g, swapaxes(b, -1, -2)), a.shape()));
    if (s.needs(1)) s.add(1, detail::sum_to(matmul(swapaxes(a, -1, -2), g), b.shape()));
}
} // namespace

namespace {
/// matmul with broadcast batch axes ([..., m, k] @ [..., k, n], neither operand 2-d): both
/// broadcast to the common batch shape, one product per batch slice.
array matmul_batched(const array& a, const array& b, std::size_t m, std::size_t kk, std::size_t n) {
    const std::size_t rank = std::max(a.ndim(), b.ndim()) - 2;
    shape_type batch_shape(rank, 1);
    for (const array* x : {&a, &b})
        for (std::size_t i = 0; i + 2 < x->ndim(); ++i) {
            const std::size_t e = x->shape()[i];
            auto& o = batch_shape[rank - (x->ndim() - 2) + i];
            if (e != o && e != 1 && o != 1) throw_matmul(a, b);
            if (e != 1) o = e;
        }
    std::size_t batch = 1;
    for (auto e : batch_shape)
        batch *= e;
    auto full = [&](shape_type tail) {
        shape_type s = batch_shape;
        s.insert(s.end(), tail.begin(), tail.end());
        return s;
    };
    const array af = k::broadcast_to(a, full({m, kk}));
    const array bf = k::broadcast_to(b, full({kk, n}));
    array out = k::float_dispatch("matmul", a, [&](auto tag) {
        using T = decltype(tag);
        return batched<T>(af, bf, false, false, batch, m, n, kk, full({m, n}));
    });
    return traced({"matmul", true}, out, {&a, &b}, [&] {
        return [a, b, af, bf, sa = a.shape(), sb = b.shape(), batch, m, n, kk, fa = full({m, kk}),
                fb = full({kk, n})](const array& g, cotangent_sink& s) {
            if (s.differentiable()) return matmul_graph_rule(a, b, g, s);
            k::float_dispatch("matmul", g, [&](auto tag) {
                using T = decltype(tag);
                if (s.needs(0)) // dA = G B^T per batch slice, summed over broadcast axes
                    s.add(0, k::sum_to(batched<T>(g, bf, false, true, batch, m, kk, n, fa), sa));
                if (s.needs(1)) // dB = A^T G per batch slice
                    s.add(1, k::sum_to(batched<T>(af, g, true, false, batch, kk, n, m, fb), sb));
                return 0;
            });
        };
    });
}
} // namespace

array matmul(const array& a, const array& b) {
    if (a.ndim() == 0 || b.ndim() == 0 || a.dtype() != b.dtype() || !is_inexact(a.dtype()))
        throw_matmul(a, b);
    // Vectors: numpy's rule, through reshapes so the gradient follows.
    if (a.ndim() == 1) {
        array r = matmul(a.reshape({1, a.size()}), b);
        shape_type s = r.shape();
        s.erase(s.end() - 2);
        return r.reshape(s);
    }
    if (b.ndim() == 1) {
        array r = matmul(a, b.reshape({b.size(), 1}));
        shape_type s = r.shape();
        s.pop_back();
        return r.reshape(s);
    }
    const std::size_t m = a.shape()[a.ndim() - 2];
    const std::size_t kk = a.shape()[a.ndim() - 1];
    const std::size_t n = b.shape()[b.ndim() - 1];
    if (b.shape()[b.ndim() - 2] != kk) throw_matmul(a, b);

    if (b.ndim() == 2) {
        // [..., m, k] @ [k, n]: one product with the batch folded into the rows.
        const std::size_t mm = product(a.shape(), 0, a.ndim() - 1);
        shape_type out_shape = a.shape();
        out_shape.back() = n;
        array out = k::float_dispatch("matmul", a, [&](auto tag) {
            using T = decltype(tag);
            return batched<T>(a, b, false, false, 1, mm, n, kk, out_shape);
        });
        return traced({"matmul", true}, out, {&a, &b}, [&] {
            return [a, b, mm, n, kk](const array& g, cotangent_sink& s) {
                if (s.differentiable()) return matmul_graph_rule(a, b, g, s);
                k::float_dispatch("matmul", g, [&](auto tag) {
                    using T = decltype(tag);
                    if (s.needs(0)) // dA = G B^T
                        s.add(0, batched<T>(g, b, false, true, 1, mm, kk, n, a.shape()));
                    if (s.needs(1)) // dB = A^T G, summed over the folded batch
                        s.add(1, batched<T>(a, g, true, false, 1, kk, n, mm, b.shape()));
                    return 0;
                });
            };
        });
    }

    return matmul_batched(a, b, m, kk, n);
}

// ---- linear --------------------------------------------------------------------------------

namespace {
/// The sizes of x [..., in] @ w [out, in]ᵀ (+ b [out]), after checking the operands.
struct linear_shape {
    std::size_t rows, in, out;
    shape_type out_shape; // x's with the last axis `out`
};
linear_shape check_linear(const char* op, const array& x, const array& w, const array* b) {
    const bool ok = x.ndim() >= 1 && w.ndim() == 2 && x.dtype() == w.dtype() &&
                    is_inexact(x.dtype()) && x.shape().back() == w.shape()[1] &&
                    (!b || (b->dtype() == x.dtype() && b->shape() == shape_type{w.shape()[0]}));
    if (!ok)
        detail::throw_shape(op, "x [..., in], weight [out, in] and bias [out] of one float dtype",
                            b ? k::describe_all({&x, &w, b}) : k::describe_all({&x, &w}));
    shape_type out_shape = x.shape();
    out_shape.back() = w.shape()[0];
    return {product(x.shape(), 0, x.ndim() - 1), w.shape()[1], w.shape()[0], std::move(out_shape)};
}

array linear_impl(const array& x, const array& w, const array* b) {
    const linear_shape sh = check_linear("linear", x, w, b);
    const std::size_t rows = sh.rows, in = sh.in, out_f = sh.out; // captured below
    const shape_type& out_shape = sh.out_shape;
    array y = k::float_dispatch("linear", x, [&](auto tag) {
        using T = decltype(tag);
        auto result_data = detail::fresh<T>(out_shape);
        array result = std::move(result_data.value);
        auto* c = result_data.data;
        if (b)
            k::gemm_bias(rows, out_f, in, data<T>(x), data<T>(w), data<T>(*b), c);
        else
            k::gemm(false, true, rows, out_f, in, data<T>(x), data<T>(w), c, T{0});
        return result;
    });
    std::vector<const array*> inputs{&x, &w};
    if (b) inputs.push_back(b);
    return traced({"linear", true}, y, detail::input_list(inputs), [&] {
        return [x, w, rows, in, out_f](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                const array g2 = g.reshape({rows, out_f});
                if (s.needs(0)) s.add(0, matmul(g, w));
                if (s.needs(1)) s.add(1, matmul(transpose(g2), x.reshape({rows, in})));
                if (s.needs(2)) s.add(2, sum(g2, {0}));
                return;
            }
            k::float_dispatch("linear", g, [&](auto tag) {
                using T = decltype(tag);
                if (s.needs(0)) // dx = g w
                    s.add(0, batched<T>(g, w, false, false, 1, rows, in, out_f, x.shape()));
                if (s.needs(1)) // dw = g^T x
                    s.add(1, batched<T>(g, x, true, false, 1, out_f, in, rows, w.shape()));
                if (s.needs(2)) // db = column sums of g
                    s.add(2, k::view(k::sum(k::view(g, {rows, out_f}), {0}), {out_f}));
                return 0;
            });
        };
    });
}
} // namespace

array linear(const array& x, const array& w, const array& b) {
    return linear_impl(x, w, &b);
}
array linear(const array& x, const array& w) {
    return linear_impl(x, w, nullptr);
}

// ---- linear + GELU -------------------------------------------------------------------------

namespace {
/// The backward pass of linear_gelu: d = g · gelu'(pre) and the bias gradient (column sums of
/// d, in float64 per thread, added in row order) in one pass over the rows, then dx = d w and
/// dw = dᵀ x.
template <class T>
void linear_gelu_backward(const array& g, const array& pre, const array& x, const array& w,
                          bool approximate, std::size_t rows, std::size_t in, std::size_t out_f,
                          cotangent_sink& s) {
    auto d_data = detail::fresh<T>({rows, out_f});
    const array d = std::move(d_data.value);
    T* dp = d_data.data;
    const T* gp = data<T>(g);
    const T* hp = data<T>(pre);
    // One loop per form: a select between them in the loop would call erf for every element
    // and keep the tanh form from vectorising.
    const auto pass = [&](auto slope) {
        return k::rows_with_sums(rows, out_f, out_f,
                                 [&](std::size_t lo, std::size_t hi, double* acc) PT_INLINE {
                                     for (std::size_t r = lo; r < hi; ++r)
                                         for (std::size_t j = 0; j < out_f; ++j) {
                                             const std::size_t i = r * out_f + j;
                                             dp[i] = gp[i] * slope(hp[i]);
                                             acc[j] += static_cast<double>(dp[i]);
                                         }
                                 });
    };
    const std::vector<double> db =
        approximate ? pass([](T v) PT_INLINE { return k::gelu_tanh_slope(v, k::gelu_tanh_t(v)); })
                    : pass([](T v) { return k::gelu_erf_slope(v); });
    if (s.needs(0)) s.add(0, batched<T>(d, w, false, false, 1, rows, in, out_f, x.shape()));
    if (s.needs(1)) s.add(1, batched<T>(d, x, true, false, 1, out_f, in, rows, w.shape()));
    if (s.needs(2))
        s.add(2, array::build<T>({out_f}, [&](std::span<T> out) {
                  for (std::size_t j = 0; j < out_f; ++j)
                      out[j] = static_cast<T>(db[j]);
              }));
}
} // namespace

array linear_gelu(const array& x, const array& w, const array& b, bool approximate) {
    const linear_shape sh = check_linear("linear_gelu", x, w, &b);
    const std::size_t rows = sh.rows, in = sh.in, out_f = sh.out; // captured below
    // The product goes to `pre`, which the activation pass completes with the bias in place
    // (no bias rows copied in before the product) and the backward pass keeps; the tanh is
    // computed again there rather than kept (one activation-sized array less per layer).
    auto pre_data = detail::fresh_bytes(x.dtype(), {rows, out_f});
    const array pre = std::move(pre_data.value);
    std::byte* pre_bytes = pre_data.data;
    array y = k::float_dispatch("linear_gelu", x, [&](auto tag) {
        using T = decltype(tag);
        auto* h = reinterpret_cast<T*>(pre_bytes);
        k::gemm(false, true, rows, out_f, in, data<T>(x), data<T>(w), h, T{0});
        auto y_data = detail::fresh<T>(sh.out_shape);
        T* yp = y_data.data;
        const T* bp = data<T>(b);
        const auto activate = [&](auto gelu_of) PT_INLINE {
            k::vectorized_rows(rows, out_f, [&](std::size_t lo, std::size_t hi) PT_INLINE {
                for (std::size_t r = lo; r < hi; ++r)
                    for (std::size_t j = 0; j < out_f; ++j) {
                        const std::size_t i = r * out_f + j;
                        const T v = h[i] + bp[j];
                        h[i] = v;
                        yp[i] = gelu_of(v);
                    }
            });
        };
        if (approximate)
            activate([](T v) PT_INLINE { return k::gelu_tanh_value(v, k::gelu_tanh_t(v)); });
        else
            activate([](T v) { return k::gelu_erf_value(v); });
        return std::move(y_data.value);
    });
    return traced({"linear_gelu", true}, y, {&x, &w, &b}, [&] {
        return [x, w, b, pre, approximate, rows, in, out_f](const array& g, cotangent_sink& s) {
            if (s.differentiable())
                return detail::composed_vjp(s, {x, w, b}, g,
                                            [approximate](const std::vector<array>& v) {
                                                return gelu(linear(v[0], v[1], v[2]), approximate);
                                            });
            k::float_dispatch("linear_gelu", g, [&](auto tag) {
                linear_gelu_backward<decltype(tag)>(g, pre, x, w, approximate, rows, in, out_f, s);
                return 0;
            });
        };
    });
}

// ---- softmax family ------------------------------------------------------------------------

namespace {
/// Calls `f(outer, r, inner)` for `x` seen as [outer, r, inner] around `axis`.
struct axis_layout {
    std::size_t outer, r, inner;
    std::size_t axis = 0; // the middle axis, normalised
};
axis_layout layout_around(const char* op, const array& x, int axis) {
    const std::size_t ax = k::normalize_axes(op, x, {axis})[0];
    return {product(x.shape(), 0, ax), x.shape()[ax], product(x.shape(), ax + 1, x.ndim()), ax};
}

/// exp(d) for d = x - max <= 0, with 0 below the underflow limit: glibc's exp takes a slow
/// path (errno, __math_uflow) on underflow, which masked scores (-1e9) would hit every time.
template <class T>
[[gnu::always_inline]] inline T exp_nonpositive(T d) {
    if constexpr (std::is_same_v<T, float>) return k::exp_f32(d); // 0 below -87.3
    return d < T(-745.0) ? T{0} : std::exp(d);
}

/// softmax (or log_softmax when `log`) along the layout's middle axis: one exp per element.
template <class T>
void softmax_rows(const T* x, T* y, axis_layout L, bool log) {
    for (std::size_t o = 0; o < L.outer; ++o)
        for (std::size_t i = 0; i < L.inner; ++i) {
            const T* xs = x + o * L.r * L.inner + i;
            T* ys = y + o * L.r * L.inner + i;
            const T mx =
                k::lane_max<T>(L.r, [&](std::size_t j) PT_INLINE { return xs[j * L.inner]; });
            // The exps into y first (independent), then their sum.
            for (std::size_t j = 0; j < L.r; ++j)
                ys[j * L.inner] = exp_nonpositive<T>(xs[j * L.inner] - mx);
            const double total = k::strided_sum(ys, L.r, L.inner);
            if (log) {
                const T lse = mx + static_cast<T>(std::log(total));
                for (std::size_t j = 0; j < L.r; ++j)
                    ys[j * L.inner] = xs[j * L.inner] - lse;
            } else {
                const T inv = static_cast<T>(1.0 / total);
                for (std::size_t j = 0; j < L.r; ++j)
                    ys[j * L.inner] *= inv;
            }
        }
}
} // namespace

namespace {
/// softmax or log_softmax along `axis`, and its backward pass:
/// softmax:     dx = y (g - sum(g y)),  log_softmax: dx = g - softmax(x) sum(g).
array softmax_op(const char* name, const array& x, int axis, bool log) {
    const auto L = layout_around(name, x, axis);
    array y = k::float_dispatch(name, x, [&](auto tag) {
        using T = decltype(tag);
        auto out = detail::fresh<T>(x.shape());
        k::vectorized(x.size(), [&]() PT_INLINE { softmax_rows<T>(data<T>(x), out.data, L, log); });
        return std::move(out.value);
    });
    const int ax = static_cast<int>(L.axis);
    return traced({name, true}, y, {&x}, [&] {
        return [name, y, L, log, ax](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                const array yt = s.output(y);
                s.add(0,
                      log ? g - exp(yt) * sum(g, {ax}, true) : yt * (g - sum(g * yt, {ax}, true)));
                return;
            }
            s.add(0, k::float_dispatch(name, g, [&](auto tag) {
                      using T = decltype(tag);
                      auto gx = detail::fresh<T>(g.shape());
                      T* out = gx.data;
                      const T* gy = data<T>(g);
                      const T* yy = data<T>(y);
                      k::vectorized(g.size(), [&]() PT_INLINE {
                          for (std::size_t o = 0; o < L.outer; ++o)
                              for (std::size_t i = 0; i < L.inner; ++i) {
                                  const std::size_t base = o * L.r * L.inner + i;
                                  T acc = 0;
                                  for (std::size_t j = 0; j < L.r; ++j) {
                                      const std::size_t q = base + j * L.inner;
                                      acc += log ? gy[q] : gy[q] * yy[q];
                                  }
                                  for (std::size_t j = 0; j < L.r; ++j) {
                                      const std::size_t q = base + j * L.inner;
                                      out[q] = log ? gy[q] - exp_nonpositive(yy[q]) * acc
                                                   : yy[q] * (gy[q] - acc);
                                  }
                              }
                      });
                      return std::move(gx.value);
                  }));
        };
    });
}
} // namespace

array softmax(const array& x, int axis) {
    return softmax_op("softmax", x, axis, false);
}

array log_softmax(const array& x, int axis) {
    return softmax_op("log_softmax", x, axis, true);
}

array cross_entropy(const array& logits, const array& targets) {
    if (logits.ndim() == 0 || targets.ndim() + 1 != logits.ndim() ||
        !std::equal(targets.shape().begin(), targets.shape().end(), logits.shape().begin()))
        detail::throw_shape("cross_entropy", "logits [..., C] and integer targets [...]",
                            k::describe_all({&logits, &targets}));
    const std::size_t classes = logits.shape().back();
    const auto idx = checked_indices("cross_entropy", targets, classes);
    const std::size_t rows = idx.size();
    return k::float_dispatch("cross_entropy", logits, [&](auto tag) {
        using T = decltype(tag);
        // Saved for the backward pass: log-probabilities of every class.
        auto logp_data = detail::fresh<T>(logits.shape());
        array logp = std::move(logp_data.value);
        auto* lp = logp_data.data;
        k::vectorized(rows * classes, [&]() PT_INLINE {
            softmax_rows<T>(data<T>(logits), lp, {rows, classes, 1}, true);
        });
        double total = 0;
        for (std::size_t i = 0; i < rows; ++i)
            total -= static_cast<double>(lp[i * classes + static_cast<std::size_t>(idx[i])]);
        const double loss = rows == 0 ? std::nan("") : total / static_cast<double>(rows);
        array out = array::full({}, loss, logits.dtype());
        return traced({"cross_entropy", true}, out, {&logits}, [&] {
            return [logits, logp, idx, classes](const array& g, cotangent_sink& s) {
                const std::size_t n = idx.size();
                if (s.differentiable()) {
                    // (softmax(logits) - onehot(targets)) g / n, with softmax recorded.
                    const array onehot =
                        one_hot(idx, classes, logits.dtype()).reshape(logits.shape());
                    s.add(0, (softmax(logits, -1) - onehot) * (g / static_cast<double>(n)));
                    return;
                }
                const T scale = static_cast<T>(g.item() / static_cast<double>(n));
                auto gx_gd = detail::fresh<T>(logp.shape());
                array gx = std::move(gx_gd.value);
                auto* out = gx_gd.data;
                const T* l = data<T>(logp);
                k::vectorized(n * classes, [&]() PT_INLINE {
                    for (std::size_t i = 0; i < n * classes; ++i)
                        out[i] = exp_nonpositive(l[i]) * scale;
                });
                for (std::size_t i = 0; i < n; ++i)
                    out[i * classes + static_cast<std::size_t>(idx[i])] -= scale;
                s.add(0, gx);
            };
        });
    });
}

// ---- layer norm ----------------------------------------------------------------------------

namespace {
/// Layer norm written with recorded operations: v = {x} or {x, gamma, beta}. Its recording
/// is what a differentiable backward pass differentiates (the fused kernel's rule is first
/// order only).
array composed_layer_norm(const std::vector<array>& v, double eps) {
    const array xc = v[0] - mean(v[0], {-1}, true);
    const array h = xc / sqrt(mean(xc * xc, {-1}, true) + eps);
    return v.size() == 1 ? h : h * v[1] + v[2];
}

/// Layer norm of `rows` rows of width `d`: `out` the normalised rows (times gamma, plus beta
/// when given), `st` each row's mean and 1/sqrt(var + eps) for the backward pass. Rows are
/// independent: split across threads, each part at the active ISA level.
template <class T>
void layer_norm_rows(const T* in, T* out, T* st, const T* gm, const T* bt, std::size_t rows,
                     std::size_t d, double eps) {
    k::vectorized_rows(rows, d, [&](std::size_t lo, std::size_t hi) PT_INLINE {
        for (std::size_t r = lo; r < hi; ++r) {
            const T* row = in + r * d;
            // Mean and variance in float64 lanes (lane_sum vectorises; a single running sum
            // would not), the squares from float64 centred values, nothing stored between.
            const double mu =
                k::lane_sum(d,
                            [&](std::size_t j) PT_INLINE { return static_cast<double>(row[j]); }) /
                static_cast<double>(d);
            const double var = k::lane_sum(d,
                                           [&](std::size_t j) PT_INLINE {
                                               const double c = static_cast<double>(row[j]) - mu;
                                               return c * c;
                                           }) /
                               static_cast<double>(d);
            const T mean = static_cast<T>(mu);
            const T rstd = static_cast<T>(1.0 / std::sqrt(var + eps));
            st[2 * r] = mean;
            st[2 * r + 1] = rstd;
            for (std::size_t j = 0; j < d; ++j) {
                const T h = (row[j] - mean) * rstd;
                out[r * d + j] = (gm ? h * gm[j] : h) + (bt ? bt[j] : T{0});
            }
        }
    });
}

/// The fused first-order backward of layer norm from the saved row statistics: dx for every
/// row in one pass, and d gamma, d beta (when `affine`) summed in double.
template <class T>
void layer_norm_backward(const array& g, const array& x, const array& stats, const array& g_one,
                         bool affine, cotangent_sink& s) {
    const std::size_t d = x.shape().back(), rows = d == 0 ? 0 : x.size() / d;
    const T* gy = data<T>(g);
    const T* in = data<T>(x);
    const T* st = data<T>(stats);
    const T* gm = data<T>(g_one);
    auto gx_gd = detail::fresh<T>(x.shape());
    array gx = std::move(gx_gd.value);
    auto* dx = gx_gd.data;
    // Rows split across threads; d gamma and d beta are column sums (sums[0, d) and [d, 2d)).
    // A row's two sums go to 8 lanes (fixed, so deterministic) that GCC vectorises; one
    // float64 accumulator would be an in-order reduction it must run element by element.
    const std::vector<double> sums = k::rows_with_sums(
        rows, d, 2 * d, [&](std::size_t lo, std::size_t hi, double* acc) PT_INLINE {
            double* dgamma = acc;
            double* dbeta = acc + d;
            for (std::size_t r = lo; r < hi; ++r) {
                const T mean = st[2 * r], rstd = st[2 * r + 1];
                const T* gr = gy + r * d;
                const T* xr = in + r * d;
                // The column sums first, in a loop of their own: with the row's two lane
                // sums beside them GCC could not tell the stores apart and left it scalar.
                for (std::size_t j = 0; j < d; ++j) {
                    const T h = (xr[j] - mean) * rstd;
                    dgamma[j] += static_cast<double>(gr[j] * h);
                    dbeta[j] += gr[j];
                }
                const double tg = k::lane_sum(
                    d, [&](std::size_t j) PT_INLINE { return static_cast<double>(gr[j] * gm[j]); });
                const double tgh = k::lane_sum(d, [&](std::size_t j) PT_INLINE {
                    return static_cast<double>(gr[j] * gm[j] * ((xr[j] - mean) * rstd));
                });
                const T mg = static_cast<T>(tg / static_cast<double>(d));
                const T mgh = static_cast<T>(tgh / static_cast<double>(d));
                for (std::size_t j = 0; j < d; ++j) {
                    const T h = (xr[j] - mean) * rstd;
                    dx[r * d + j] = rstd * (gr[j] * gm[j] - mg - h * mgh);
                }
            }
        });
    s.add(0, gx);
    auto vec = [&](std::size_t from) {
        return array::build<T>({d}, [&](std::span<T> o) {
            for (std::size_t j = 0; j < d; ++j)
                o[j] = static_cast<T>(sums[from + j]);
        });
    };
    if (affine && s.needs(1)) s.add(1, vec(0));
    if (affine && s.needs(2)) s.add(2, vec(d));
}

array layer_norm_impl(const array& x, const array* gamma, const array* beta, double eps) {
    if (x.ndim() == 0) detail::throw_shape("layer_norm", "an array of rank >= 1", x.describe());
    const std::size_t d = x.shape().back();
    for (const array* p : {gamma, beta})
        if (p && (p->dtype() != x.dtype() || p->shape() != shape_type{d}))
            detail::throw_shape("layer_norm",
                                fmt::format("gamma and beta of {}", describe(x.dtype(), {d})),
                                k::describe_all({&x, p}));
    const std::size_t rows = d == 0 ? 0 : x.size() / d;
    return k::float_dispatch("layer_norm", x, [&](auto tag) {
        using T = decltype(tag);
        auto y_yd = detail::fresh<T>(x.shape());
        array y = std::move(y_yd.value);
        // Saved per row for the backward pass: mean and 1/sqrt(var + eps).
        auto stats_sd = detail::fresh<T>({rows, 2});
        array stats = std::move(stats_sd.value);
        T* out = y_yd.data;
        T* st = stats_sd.data;
        const T* in = data<T>(x);
        const T* gm = gamma ? data<T>(*gamma) : nullptr;
        const T* bt = beta ? data<T>(*beta) : nullptr;
        layer_norm_rows<T>(in, out, st, gm, bt, rows, d, eps);
        std::vector<const array*> inputs{&x};
        if (gamma) inputs.push_back(gamma);
        if (beta) inputs.push_back(beta);
        const array g_one = gamma ? *gamma : array::ones({d}, x.dtype());
        return traced({"layer_norm", true}, y, detail::input_list(inputs), [&] {
            const bool affine = gamma != nullptr; // inputs: x, or x, gamma, beta
            return [x, g_one, stats, affine, eps,
                    beta = beta ? *beta : array{}](const array& g, cotangent_sink& s) {
                if (s.differentiable())
                    return detail::composed_vjp(
                        s, affine ? std::vector<array>{x, g_one, beta} : std::vector<array>{x}, g,
                        [eps](const std::vector<array>& v) { return composed_layer_norm(v, eps); });
                layer_norm_backward<T>(g, x, stats, g_one, affine, s);
            };
        });
    });
}
} // namespace

array layer_norm(const array& x, const array& gamma, const array& beta, double eps) {
    return layer_norm_impl(x, &gamma, &beta, eps);
}
array layer_norm(const array& x, double eps) {
    return layer_norm_impl(x, nullptr, nullptr, eps);
}

// ---- rms norm ------------------------------------------------------------------------------

array rms_norm(const array& x, const array& gamma, double eps) {
    if (x.ndim() == 0) detail::throw_shape("rms_norm", "an array of rank >= 1", x.describe());
    const std::size_t d = x.shape().back();
    if (gamma.dtype() != x.dtype() || gamma.shape() != shape_type{d})
        detail::throw_shape("rms_norm", fmt::format("a gain of {}", describe(x.dtype(), {d})),
                            k::describe_all({&x, &gamma}));
    const std::size_t rows = d == 0 ? 0 : x.size() / d;
    return k::float_dispatch("rms_norm", x, [&](auto tag) {
        using T = decltype(tag);
        auto y_yd = detail::fresh<T>(x.shape());
        // Saved per row for the backward pass: 1/sqrt(mean(x^2) + eps).
        auto r_rd = detail::fresh<T>({rows});
        T* out = y_yd.data;
        T* rs = r_rd.data;
        const T* in = data<T>(x);
        const T* gm = data<T>(gamma);
        k::vectorized_rows(rows, d, [&](std::size_t lo, std::size_t hi) PT_INLINE {
            for (std::size_t r = lo; r < hi; ++r) {
                const T* row = in + r * d;
                double sq = 0;
                for (std::size_t j = 0; j < d; ++j)
                    sq += static_cast<double>(row[j]) * row[j];
                const T rstd = static_cast<T>(1.0 / std::sqrt(sq / double(d) + eps));
                rs[r] = rstd;
                for (std::size_t j = 0; j < d; ++j)
                    out[r * d + j] = row[j] * rstd * gm[j];
            }
        });
        const array rstd = std::move(r_rd.value);
        return traced({"rms_norm", true}, std::move(y_yd.value), {&x, &gamma}, [&] {
            return [x, gamma, rstd, rows, d, eps](const array& g, cotangent_sink& s) {
                if (s.differentiable()) {
                    detail::composed_vjp(s, {x, gamma}, g, [eps](const std::vector<array>& v) {
                        return v[0] / sqrt(mean(v[0] * v[0], {-1}, true) + eps) * v[1];
                    });
                    return;
                }
                const T* gy = data<T>(g);
                const T* in = data<T>(x);
                const T* rs = data<T>(rstd);
                const T* gm = data<T>(gamma);
                std::vector<double> dgamma(d, 0.0);
                auto gx_gd = detail::fresh<T>(x.shape());
                T* dx = gx_gd.data;
                // With h = x * r: dx = r * (g*gamma - h * mean(g*gamma*h)), dgamma = sum g*h.
                for (std::size_t r = 0; r < rows; ++r) {
                    double sum_gh = 0;
                    for (std::size_t j = 0; j < d; ++j) {
                        const double h = static_cast<double>(in[r * d + j]) * rs[r];
                        sum_gh += static_cast<double>(gy[r * d + j]) * gm[j] * h;
                        dgamma[j] += static_cast<double>(gy[r * d + j]) * h;
                    }
                    const double m = sum_gh / static_cast<double>(d);
                    for (std::size_t j = 0; j < d; ++j) {
                        const double h = static_cast<double>(in[r * d + j]) * rs[r];
                        dx[r * d + j] = static_cast<T>(rs[r] * (gy[r * d + j] * gm[j] - h * m));
                    }
                }
                if (s.needs(0)) s.add(0, std::move(gx_gd.value));
                if (s.needs(1))
                    s.add(1, array::build<T>({d}, [&](std::span<T> o) {
                              for (std::size_t j = 0; j < d; ++j)
                                  o[j] = static_cast<T>(dgamma[j]);
                          }));
            };
        });
    });
}

// ---- batch norm ----------------------------------------------------------------------------

batch_norm_output batch_norm(const array& x, const array& gamma, const array& beta,
                             const array& running_mean, const array& running_var, bool training,
                             double eps) {
    if (x.ndim() < 2)
        detail::throw_shape("batch_norm", "an input [N, C, ...] of rank >= 2", x.describe());
    const std::size_t c = x.shape()[1];
    for (const array* p : {&gamma, &beta, &running_mean, &running_var})
        if (p->dtype() != x.dtype() || p->shape() != shape_type{c})
            detail::throw_shape(
                "batch_norm",
                fmt::format("gamma, beta and running statistics of {}", describe(x.dtype(), {c})),
                k::describe_all({&x, &gamma, &beta, &running_mean, &running_var}));
    k::float_dispatch("batch_norm", x, [](auto) { return 0; });
    // Per-channel arrays broadcast as [1, C, 1, ...].
    shape_type per_channel(x.ndim(), 1);
    per_channel[1] = c;
    const auto spread = [&](const array& v) { return reshape(v, per_channel); };
    std::vector<int> axes{0};
    for (std::size_t a = 2; a < x.ndim(); ++a)
        axes.push_back(static_cast<int>(a));
    const std::size_t count = x.size() / std::max<std::size_t>(c, 1);
    if (!training) {
        const array scale = gamma / sqrt(running_var + eps);
        return {(x - spread(running_mean)) * spread(scale) + spread(beta), running_mean,
                running_var};
    }
    if (count < 2)
        detail::throw_shape("batch_norm",
                            "more than one value per channel to take batch statistics of",
                            x.describe());
    // Composed from the differentiable operations, so gradients flow through the statistics.
    const array mu = mean(x, axes, true);
    const array centred = x - mu;
    const array var = mean(centred * centred, axes, true);
    const array y = centred / sqrt(var + eps) * spread(gamma) + spread(beta);
    const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
    return {y, stop_gradient(reshape(mu, {c})), stop_gradient(reshape(var, {c}) * unbias)};
}

// ---- dropout -------------------------------------------------------------------------------

array dropout(const random::key& key, const array& x, double rate) {
    if (!(rate >= 0 && rate < 1))
        detail::throw_shape("dropout", "a rate in [0, 1)", fmt::format("{}", rate));
    k::float_dispatch("dropout", x, [](auto) { return 0; });
    if (rate == 0) return x;
    const array keep = random::bernoulli(key, x.shape(), 1 - rate);
    const array zero = array::zeros({}, x.dtype());
    // The mask, scaled: y = x * m, dy/dx = m.
    const array m = k::select(keep, array::full({}, 1 / (1 - rate), x.dtype()), zero, x.shape());
    return traced({"dropout", true}, k::mul(x, m), {&x}, [&] {
        return [m](const array& g, cotangent_sink& s) { s.add(0, detail::rule_ops(s).mul(g, m)); };
    });
}

} // namespace paramtree
