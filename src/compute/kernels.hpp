// paramtree — internal to src/: the untraced numeric kernels the differentiable operations
// (ops.cpp, ops_nn.cpp) and their backward functions are built from. Kernels read their
// inputs' elements and ignore any trace, so a backward pass is never itself recorded.
#pragma once

#include <array>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <paramtree/array.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/precision.hpp>
#include <paramtree/detail/errors.hpp>

namespace paramtree::kernels {

// ---- runtime ISA dispatch ------------------------------------------------------------------
//
// The library is compiled for baseline x86-64 (SSE2), so it runs on every x86-64 CPU. Hot
// loops are compiled again for AVX2+FMA and AVX-512 through GCC's `target` attribute and the
// widest level the CPU has is chosen once, at the first call: `vectorized(loop)` runs `loop`
// (a lambda marked PT_INLINE, so that its body — and the small element functions it calls —
// is compiled into each clone) at that level. PARAMTREE_ISA=sse2|avx2|avx512 forces a level
// (tests compare the levels; a level the CPU lacks is a value_error, not a SIGILL).

/// The vector ISA levels of paramtree's own kernels.
enum class isa_level : std::uint8_t { sse2, avx2, avx512 };
/// The widest level this CPU supports.
[[nodiscard]] isa_level cpu_isa() noexcept;
/// The level the kernels run at (the CPU's, or PARAMTREE_ISA); decided once per process.
[[nodiscard]] isa_level active_isa();
/// `sse2`, `avx2`, `avx512`.
[[nodiscard]] const char* isa_name(isa_level l) noexcept;

#define PT_INLINE __attribute__((always_inline))

/// Before a loop whose arrays do not overlap (it writes fresh outputs): with more than a few
/// pointers GCC's run-time overlap checks exceed its limit (10 pairs) and it does not
/// vectorise the loop at all — Adam's loop (7 arrays) ran scalar until it said so.
/// (Clang's loop pragmas make a loop they cannot vectorise a -Werror failure; the clang builds
/// are the sanitizer and fuzzing ones, so there it is nothing.)
#if defined(__clang__)
#define PT_NO_ALIAS
#else
#define PT_NO_ALIAS _Pragma("GCC ivdep")
#endif

template <class F>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,f16c"))) void
on_avx512(F& loop) {
    loop();
}
template <class F>
__attribute__((target("avx2,fma,bmi,bmi2,f16c"))) void on_avx2(F& loop) {
    loop();
}
/// Runs `loop` over `n` elements compiled for the active ISA level. Short loops run the
/// baseline code: below a few vectors the wide versions' set-up costs more than it saves.
template <class F>
void vectorized(std::size_t n, F&& loop) {
    static const isa_level level = active_isa();
    if (n < 64) {
        loop();
        return;
    }
    switch (level) {
    case isa_level::avx512:
        on_avx512(loop);
        return;
    case isa_level::avx2:
        on_avx2(loop);
        return;
    case isa_level::sse2:
        break;
    }
    loop();
}

/// Threads for paramtree's own loops: the OpenMP pool that oneDNN's products use too, so the
/// two never oversubscribe the cores (PARAMTREE_NUM_THREADS or OMP_NUM_THREADS set its size).
[[nodiscard]] int max_threads() noexcept;

/// Runs `body(begin, end)` over [0, n) split into contiguous parts, one per thread, when n is
/// at least two grains (else on the calling thread). Parts never overlap, so bodies that
/// write only their own range need no synchronisation. The workers run under the caller's
/// matmul precision (a precision_scope is per thread), so a product inside `body` computes
/// as it would on the calling thread.
template <class Body>
void parallel_for(std::size_t n, std::size_t grain, Body&& body) {
    const std::size_t most = grain == 0 ? 1 : n / grain;
    const int threads = static_cast<int>(std::min<std::size_t>(
        static_cast<std::size_t>(std::max(1, max_threads())), std::max<std::size_t>(1, most)));
    if (threads <= 1) {
        body(std::size_t{0}, n);
        return;
    }
#ifdef _OPENMP
    const matmul_precision precision = current_matmul_precision();
#pragma omp parallel num_threads(threads)
    {
        const precision_scope same_as_caller(precision);
        const auto t = static_cast<std::size_t>(omp_get_thread_num());
        const auto k = static_cast<std::size_t>(omp_get_num_threads());
        body(n * t / k, n * (t + 1) / k);
    }
#else
    body(std::size_t{0}, n);
#endif
}

/// Elements per thread below which a loop is not split: fewer and the threads' start-up costs
/// more than they save.
inline constexpr std::size_t parallel_grain = 64 * 1024;

/// `body(begin, end)` (a PT_INLINE lambda) over [0, n): split across threads for large n,
/// each part compiled for the active ISA.
template <class Body>
void vectorized_parallel(std::size_t n, Body&& body) {
    parallel_for(n, parallel_grain, [&](std::size_t b, std::size_t e) {
        vectorized(e - b, [&]() PT_INLINE { body(b, e); });
    });
}

/// The grain, in rows, that splits rows of `width` elements across threads in parts of at
/// least parallel_grain elements.
[[nodiscard]] constexpr std::size_t row_grain(std::size_t width) noexcept {
    return std::max<std::size_t>(1, parallel_grain / std::max<std::size_t>(width, 1));
}

/// `body(first, last)` (a PT_INLINE lambda) over rows [0, rows) of `width` elements each:
/// split across threads by whole rows, each part compiled for the active ISA.
template <class Body>
void vectorized_rows(std::size_t rows, std::size_t width, Body&& body) {
    parallel_for(rows, row_grain(width), [&](std::size_t b, std::size_t e) {
        vectorized((e - b) * width, [&]() PT_INLINE { body(b, e); });
    });
}

/// `body(first, last, sums)` (a PT_INLINE lambda) over rows [0, rows) of `width` elements,
/// split across threads like vectorized_rows, where each part also adds into its own `sums`
/// (`n` float64 zeros: column sums of a backward pass, a bias or a norm's gain). The parts'
/// sums are added in row order, so the total does not depend on which thread ran which part.
template <class Body>
[[nodiscard]] std::vector<double> rows_with_sums(std::size_t rows, std::size_t width, std::size_t n,
                                                 Body&& body) {
    std::vector<std::pair<std::size_t, std::vector<double>>> parts;
    std::mutex parts_mutex;
    parallel_for(rows, row_grain(width), [&](std::size_t b, std::size_t e) {
        std::vector<double> sums(n, 0.0);
        double* acc = sums.data();
        vectorized((e - b) * width, [&]() PT_INLINE { body(b, e, acc); });
        const std::lock_guard lock(parts_mutex);
        parts.emplace_back(b, std::move(sums));
    });
    std::sort(parts.begin(), parts.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    std::vector<double> total(n, 0.0);
    for (const auto& part : parts)
        for (std::size_t j = 0; j < n; ++j)
            total[j] += part.second[j];
    return total;
}

/// `f32[2,3] and f64[3]`, for messages.
[[nodiscard]] std::string describe_all(std::initializer_list<const array*> xs);

/// Calls `f(float{})` or `f(double{})`; throws shape_error naming `op` for other dtypes.
template <class F>
decltype(auto) float_dispatch(std::string_view op, const array& x, F&& f) {
    if (x.dtype() == dtype::float32) return f(float{});
    if (x.dtype() != dtype::float64)
        detail::throw_shape(std::string(op), "a float32 or float64 array", x.describe());
    return f(double{});
}

/// Like float_dispatch, also accepting int32 and int64.
template <class F>
decltype(auto) numeric_dispatch(std::string_view op, const array& x, F&& f) {
    switch (x.dtype()) {
    case dtype::float32:
        return f(float{});
    case dtype::float64:
        return f(double{});
    case dtype::int32:
        return f(std::int32_t{});
    case dtype::int64:
        return f(std::int64_t{});
    case dtype::boolean:
        break;
    }
    detail::throw_shape(std::string(op), "a numeric array", x.describe());
}

/// Throws shape_error unless all operands have one dtype.
void check_same_dtype(std::string_view op, std::initializer_list<const array*> xs);

/// numpy broadcasting of shapes; throws shape_error naming `op` and the operands.
[[nodiscard]] shape_type broadcast_shapes(std::string_view op,
                                          std::initializer_list<const array*> xs);

/// A broadcast iteration over `out_shape`, with dimensions merged where every operand is
/// contiguous across them, so that inner loops run over long unit- or zero-stride rows.
struct broadcast_plan {
    std::vector<std::size_t> shape;                  // merged output dimensions
    std::array<std::vector<std::size_t>, 3> strides; // per operand, 0 where broadcast
    std::size_t operands = 0;
};
[[nodiscard]] broadcast_plan plan_broadcast(const shape_type& out_shape,
                                            std::initializer_list<const shape_type*> in_shapes);

/// Calls `run(out_offset, offsets, n, incs)` for every row of the plan: `n` output elements
/// starting at `out_offset`, operand k starting at offsets[k] with step incs[k].
template <class Run>
void for_each_row(const broadcast_plan& p, Run&& run) {
    const std::size_t rank = p.shape.size();
    std::array<std::size_t, 3> inc{}, off{};
    if (rank == 0) {
        run(std::size_t{0}, off, std::size_t{1}, inc);
        return;
    }
    const std::size_t n = p.shape[rank - 1];
    for (std::size_t k = 0; k < p.operands; ++k)
        inc[k] = p.strides[k][rank - 1];
    std::size_t rows = 1;
    for (std::size_t d = 0; d + 1 < rank; ++d)
        rows *= p.shape[d];
    if (n == 0) return;
    std::vector<std::size_t> idx(rank, 0);
    std::size_t out = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        run(out, off, n, inc);
        out += n;
        for (std::size_t d = rank - 1; d-- > 0;) {
            for (std::size_t k = 0; k < p.operands; ++k)
                off[k] += p.strides[k][d];
            if (++idx[d] < p.shape[d]) break;
            for (std::size_t k = 0; k < p.operands; ++k)
                off[k] -= p.strides[k][d] * p.shape[d];
            idx[d] = 0;
        }
    }
}

/// out = f(a, b) elementwise with broadcasting, all of element type T.
template <class T, class F>
[[nodiscard]] array binary(const array& a, const array& b, const shape_type& out_shape, F f) {
    auto result_data = detail::fresh<T>(out_shape);
    array result = std::move(result_data.value);
    auto* out = result_data.data;
    const auto* x = detail::data<T>(a);
    const auto* y = detail::data<T>(b);
    if (a.shape() == out_shape && b.shape() == out_shape) {
        const std::size_t n = result.size();
        vectorized_parallel(n, [&](std::size_t b, std::size_t e) PT_INLINE {
            for (std::size_t i = b; i < e; ++i)
                out[i] = f(x[i], y[i]);
        });
        return result;
    }
    const auto plan = plan_broadcast(out_shape, {&a.shape(), &b.shape()});
    for_each_row(plan, [&](std::size_t o, const auto& off, std::size_t n, const auto& inc) {
        T* dst = out + o;
        const T* xs = x + off[0];
        const T* ys = y + off[1];
        // Specialised unit/zero strides so the common rows vectorise.
        vectorized(n, [&]() PT_INLINE {
            if (inc[0] == 1 && inc[1] == 1)
                for (std::size_t i = 0; i < n; ++i)
                    dst[i] = f(xs[i], ys[i]);
            else if (inc[0] == 1 && inc[1] == 0)
                for (std::size_t i = 0; i < n; ++i)
                    dst[i] = f(xs[i], ys[0]);
            else if (inc[0] == 0 && inc[1] == 1)
                for (std::size_t i = 0; i < n; ++i)
                    dst[i] = f(xs[0], ys[i]);
            else
                for (std::size_t i = 0; i < n; ++i)
                    dst[i] = f(xs[i * inc[0]], ys[i * inc[1]]);
        });
    });
    return result;
}

/// max over j in [0, n) of term(j), in sixteen lanes combined at the end: one running maximum
/// is a chain of dependent compares GCC leaves scalar (a float max is not associative for it),
/// sixteen independent ones vectorise. A maximum is exact, so the lanes change no result; a
/// NaN term is skipped exactly as by `std::max(m, nan)` (the callers' NaNs reach the output
/// through their other passes). -inf for n = 0.
template <class T, class Term>
[[gnu::always_inline]] inline T lane_max(std::size_t n, Term&& term) {
    constexpr std::size_t lanes = 16;
    T acc[lanes];
    for (T& a : acc)
        a = -std::numeric_limits<T>::infinity();
    std::size_t j = 0;
    for (; j + lanes <= n; j += lanes)
        for (std::size_t u = 0; u < lanes; ++u) {
            const T v = term(j + u);
            acc[u] = acc[u] < v ? v : acc[u];
        }
    for (; j < n; ++j) {
        const T v = term(j);
        acc[0] = acc[0] < v ? v : acc[0];
    }
    T m = acc[0];
    for (std::size_t u = 1; u < lanes; ++u)
        m = m < acc[u] ? acc[u] : m;
    return m;
}

/// Sum of n values `stride` apart, in double, with four independent partial sums so the
/// additions pipeline instead of waiting on each other.
template <class T>
[[gnu::always_inline]] inline double strided_sum(const T* p, std::size_t n, std::size_t stride) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        a0 += p[j * stride];
        a1 += p[(j + 1) * stride];
        a2 += p[(j + 2) * stride];
        a3 += p[(j + 3) * stride];
    }
    for (; j < n; ++j)
        a0 += p[j * stride];
    return (a0 + a1) + (a2 + a3);
}

/// Σ term(j) over j in [0, n) in float64, in eight lanes (blocks of eight, the tail in lane
/// 0) added pairwise at the end: one running sum is an in-order reduction GCC leaves scalar,
/// eight independent ones vectorise, and the order (so the result) is fixed. `term` (a
/// PT_INLINE lambda) may write as it goes (softmax stores each exponential it sums).
template <class Term>
[[gnu::always_inline]] inline double lane_sum(std::size_t n, Term&& term) {
    double acc[8] = {};
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (std::size_t u = 0; u < 8; ++u)
            acc[u] += term(j + u);
    for (; j < n; ++j)
        acc[0] += term(j);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/// Σ p[i]² in double (lane_sum), at the active ISA level.
template <class T>
double sum_of_squares(const T* p, std::size_t n) {
    double total = 0;
    vectorized(n, [&]() PT_INLINE {
        total = lane_sum(n, [&](std::size_t j) PT_INLINE {
            return static_cast<double>(p[j]) * static_cast<double>(p[j]);
        });
    });
    return total;
}

/// e^x for float32 without a library call, so that loops over it vectorise: Cody-Waite range
/// reduction x = n ln2 + r, Cephes' degree-6 polynomial for e^r on [-ln2/2, ln2/2], and 2^n
/// applied as two factors 2^(n/2) 2^(n - n/2), each a normal float, so the result is right
/// from the denormals to FLT_MAX. Relative error below 2.5e-7 (about 2 ulp); 0 below -104
/// (where e^x rounds to 0 in float), +inf above 88.72.
[[gnu::always_inline]] inline float exp_f32(float x) {
    constexpr float hi = 88.7228394f, lo = -103.972084f;
    // NaN takes `lo` here so that n below stays an integer (converting NaN to int is undefined
    // behaviour), and is returned as itself at the end.
    const float xc = x > hi ? hi : (x >= lo ? x : lo);
    // Round x log2(e) to the nearest integer with the 1.5 * 2^23 trick (no rint call).
    constexpr float shifter = 12582912.0f;
    const float n = (xc * 1.44269504088896341f + shifter) - shifter;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const auto ni = static_cast<std::int32_t>(n);
    const std::int32_t half = ni / 2;
    const float s1 = std::bit_cast<float>((half + 127) << 23);
    const float s2 = std::bit_cast<float>((ni - half + 127) << 23);
    const float y = p * s1 * s2;
    return x > hi ? std::numeric_limits<float>::infinity() : (x >= lo ? y : (x < lo ? 0.0f : x));
}
/// tanh for float32 without a library call (vectorises): a [13/6] rational approximation
/// x P(x²)/Q(x²) (Eigen's coefficients), one division and ten fused multiply-adds, no
/// exponential. Relative error below 3e-7 (about 5 ulp) over the float range; x itself below
/// 4e-4 (where tanh x rounds to x), exactly ±1 from |x| ≥ 9 (where it rounds to ±1), NaN as
/// itself. Why not 1 - 2/(e^2x + 1): that needs an exponential *and* the division, plus a
/// second polynomial below 0.625 where it cancels — 2.5x slower, and GELU's tanh is the
/// largest elementwise cost of the demo's step (1.09 against 0.44 ns an element).
[[gnu::always_inline]] inline float tanh_f32(float x) {
    constexpr float clamp = 7.99881172180175781f; // the rational's ratio stays below 1 up to here
    const float xc = x > clamp ? clamp : (x < -clamp ? -clamp : x);
    const float z = xc * xc;
    float p = z * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = z * p - 8.60467152213735e-11f;
    p = z * p + 5.12229709037114e-08f;
    p = z * p + 1.48572235717979e-05f;
    p = z * p + 6.37261928875436e-04f;
    p = z * p + 4.89352455891786e-03f;
    float q = z * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = z * q + 2.26843463243900e-03f;
    q = z * q + 4.89352518554385e-03f;
    const float ratio = xc * p / q;
    const float a = x < 0 ? -x : x;
    return a < 4e-4f ? x : (a >= 9.0f ? (x < 0 ? -1.0f : 1.0f) : ratio);
}
template <class T>
[[gnu::always_inline]] inline T fast_tanh(T x) {
    if constexpr (std::is_same_v<T, float>)
        return tanh_f32(x);
    else
        return std::tanh(x);
}

/// std::exp for float64 (the gradient checks' precision), exp_f32 for float32.
template <class T>
[[gnu::always_inline]] inline T fast_exp(T x) {
    if constexpr (std::is_same_v<T, float>)
        return exp_f32(x);
    else
        return std::exp(x);
}

/// GELU's element functions, one definition for `gelu` and `linear_gelu`. The tanh form:
/// t = tanh(√(2/π) (v + 0.044715 v³)), gelu(v) = ½ v (1 + t), and its slope from v and t.
inline constexpr double gelu_c = 0.7978845608028654; // √(2/π)
template <class T>
[[gnu::always_inline]] inline T gelu_tanh_t(T v) {
    return fast_tanh(T(gelu_c) * (v + T(0.044715) * v * v * v));
}
template <class T>
[[gnu::always_inline]] inline T gelu_tanh_value(T v, T t) {
    return T(0.5) * v * (T{1} + t);
}
template <class T>
[[gnu::always_inline]] inline T gelu_tanh_slope(T v, T t) {
    return T(0.5) * (T{1} + t) +
           T(0.5) * v * (T{1} - t * t) * T(gelu_c) * (T{1} + T(3 * 0.044715) * v * v);
}
/// The exact form: gelu(v) = v Φ(v), slope Φ(v) + v φ(v).
template <class T>
[[gnu::always_inline]] inline T gelu_erf_value(T v) {
    return T(0.5) * v * (T{1} + std::erf(v * T(0.70710678118654752)));
}
template <class T>
[[gnu::always_inline]] inline T gelu_erf_slope(T v) {
    const T cdf = T(0.5) * (T{1} + std::erf(v * T(0.70710678118654752)));
    return cdf + v * std::exp(T(-0.5) * v * v) * T(0.39894228040143268); // 1/√(2π)
}

/// out = f(x) elementwise.
template <class T, class F>
[[nodiscard]] array unary(const array& x, F f) {
    auto result_data = detail::fresh<T>(x.shape());
    array result = std::move(result_data.value);
    auto* out = result_data.data;
    const auto* in = detail::data<T>(x);
    const std::size_t n = x.size();
    vectorized_parallel(n, [&](std::size_t b, std::size_t e) PT_INLINE {
        for (std::size_t i = b; i < e; ++i)
            out[i] = f(in[i]);
    });
    return result;
}

/// out = f(x, y, z) elementwise over three arrays of one shape.
template <class T, class F>
[[nodiscard]] array zip3(const array& x, const array& y, const array& z, F f) {
    auto result_data = detail::fresh<T>(x.shape());
    array result = std::move(result_data.value);
    auto* out = result_data.data;
    const auto* a = detail::data<T>(x);
    const auto* b = detail::data<T>(y);
    const auto* c = detail::data<T>(z);
    const std::size_t n = x.size();
    vectorized_parallel(n, [&](std::size_t lo, std::size_t hi) PT_INLINE {
        for (std::size_t i = lo; i < hi; ++i)
            out[i] = f(a[i], b[i], c[i]);
    });
    return result;
}

/// out = f(x, y) elementwise over two arrays of one shape.
template <class T, class F>
[[nodiscard]] array zip(const array& x, const array& y, F f) {
    return binary<T>(x, y, x.shape(), f);
}

// Untraced arithmetic with broadcasting (same dtype; checked by the callers).
[[nodiscard]] array add(const array& a, const array& b);
[[nodiscard]] array sub(const array& a, const array& b);
[[nodiscard]] array mul(const array& a, const array& b);
[[nodiscard]] array div(const array& a, const array& b);
[[nodiscard]] array neg(const array& a);
/// a * s for a scalar s, in a's dtype.
[[nodiscard]] array scale(const array& a, double s);
/// a + s for a scalar s, in a's dtype (no 0-d array, no broadcast plan).
[[nodiscard]] array offset(const array& a, double s);

/// Axes normalised: negative counted from the end, sorted, unique; empty means all.
/// Throws shape_error naming `op` for an axis out of range or repeated.
[[nodiscard]] std::vector<std::size_t> normalize_axes(std::string_view op, const array& x,
                                                      const std::vector<int>& axes);
/// The shape after reducing `axes` (normalised), with or without the kept 1s.
[[nodiscard]] shape_type reduced_shape(const shape_type& in, const std::vector<std::size_t>& axes,
                                       bool keepdims);
/// Sum / max over normalised axes, keepdims shape.
[[nodiscard]] array sum(const array& x, const std::vector<std::size_t>& axes);
[[nodiscard]] array max(const array& x, const std::vector<std::size_t>& axes);
/// `x` seen with another shape of the same size: zero-copy and untraced.
[[nodiscard]] array view(const array& x, shape_type shape);
/// `x` with its axes permuted (output axis i is input axis perm[i]); untraced.
[[nodiscard]] array permute(const array& x, const std::vector<std::size_t>& perm);
/// `a` where `mask` holds, else `b`, broadcast to `shape`; untraced.
[[nodiscard]] array select(const array& mask, const array& a, const array& b,
                           const shape_type& shape);
/// `x` broadcast to `shape` (a copy; zero-copy if the shape already matches).
[[nodiscard]] array broadcast_to(const array& x, const shape_type& shape);
/// The transpose of broadcast_to: sums `g` over the axes that broadcasting `shape` added.
[[nodiscard]] array sum_to(const array& g, const shape_type& shape);

/// C = op(A) · op(B) (+ beta·C), row-major, through the process's matmul library (see
/// <paramtree/backend.hpp>). op(A) is m×k, op(B) is k×n; lda/ldb/ldc are the row strides of
/// the stored A, B and C (so strided sub-matrices need no copy).
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, float beta);
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          std::size_t lda, const double* b, std::size_t ldb, double* c, std::size_t ldc,
          double beta);
/// C = A · Bᵀ + bias, bias added to every row: a linear layer's x·wᵀ + b, with A m×k, B n×k
/// and C m×n dense. Under oneDNN the bias is the product's epilogue, not a pass of its own.
void gemm_bias(std::size_t m, std::size_t n, std::size_t k, const float* a, const float* b,
               const float* bias, float* c);
void gemm_bias(std::size_t m, std::size_t n, std::size_t k, const double* a, const double* b,
               const double* bias, double* c);
/// Where the products of a batch are: product (i, j), for i < outer and j < inner, takes its
/// A at a + i·a[0] + j·a[1] (B and C likewise, in elements). Two batch axes let attention's
/// [batch, head] products read their heads in place from [B, T, H·dh] rows.
struct batch_strides {
    std::size_t outer = 1, inner = 1;
    std::array<std::size_t, 2> a{}, b{}, c{};
};
/// outer·inner products C_ij = op(A_ij) · op(B_ij) (+ beta·C_ij), each as `gemm` above. float32
/// under oneDNN is one batched matmul primitive (per-product calls cost about a fifth more at
/// attention's 64x64x64 heads); otherwise the products are split across threads.
void gemm_batched(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                  const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
                  std::size_t ldc, float beta, const batch_strides& batch);
void gemm_batched(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double* c,
                  std::size_t ldc, double beta, const batch_strides& batch);
/// The same for dense operands (lda = k or m, ldb = n or k, ldc = n).
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float* c, float beta);
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          const double* b, double* c, double beta);

} // namespace paramtree::kernels
