// paramtree — matrix products: float32 through the process's matmul library (oneDNN's JIT
// sgemm where the build has it, else the system BLAS), float64 through the system BLAS
// (oneDNN has no dgemm). Row-major throughout; leading dimensions let callers multiply
// strided sub-matrices (one attention head inside [t, dim] rows) without copying them.
#include "compute/kernels.hpp"

#include <paramtree/backend.hpp>

#include <paramtree/precision.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include <cblas.h>
#ifdef PARAMTREE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <immintrin.h>
#endif

namespace paramtree::kernels {

namespace {
/// The product of empty factors: BLAS rejects leading dimensions of 0.
template <class T>
void empty_product(std::size_t m, std::size_t n, T* c, std::size_t ldc, T beta) {
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j)
            c[i * ldc + j] = beta == T{0} ? T{0} : beta * c[i * ldc + j];
}

CBLAS_TRANSPOSE op(bool t) {
    return t ? CblasTrans : CblasNoTrans;
}
int as_int(std::size_t v) {
    return static_cast<int>(v);
}
} // namespace

#ifdef PARAMTREE_HAVE_ONEDNN
namespace {

/// `rows` x `cols` floats with row stride `ld`, rounded into `out` densely (row stride cols),
/// to nearest with ties to even (the rounding of the matrix units' own conversions and of
/// PyTorch's), NaN staying NaN. The CPU's own instruction does it: this runs only where
/// oneDNN found AVX512-BF16, and a portable bit-twiddling loop cost 18% of a bf16 demo step.
__attribute__((target("avx512f,avx512vl,avx512bw,avx512bf16"))) void
round_to_bf16(const float* src, std::size_t rows, std::size_t cols, std::size_t ld,
              std::uint16_t* out) {
    const std::size_t whole = cols / 16 * 16;
    const auto tail = static_cast<__mmask16>((1u << (cols - whole)) - 1u);
    for (std::size_t r = 0; r < rows; ++r) {
        const float* row = src + r * ld;
        std::uint16_t* o = out + r * cols;
        std::size_t j = 0;
        for (; j < whole; j += 16) {
            const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(row + j));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j),
                                (__m256i)h /* the same 32 bytes */);
        }
        if (tail != 0) {
            const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail, row + j));
            _mm256_mask_storeu_epi16(o + j, tail, (__m256i)h);
        }
    }
}

/// One matmul primitive, as oneDNN compiled it for one shape, with memory objects whose data
/// handles are re-pointed at each call.
struct plan {
    dnnl::matmul product;
    dnnl::memory a, b, c, bias; // bias: empty unless the plan adds one
};

/// What a plan was compiled for: data types, dims and strides of A, B and C, and beta. A
/// fixed array (no allocation per lookup); unused entries stay 0.
struct plan_key {
    std::array<std::int64_t, 20> v{};
    bool operator==(const plan_key&) const = default;
};
struct plan_key_hash {
    std::size_t operator()(const plan_key& key) const noexcept {
        std::size_t h = 0;
        for (const std::int64_t x : key.v)
            h = h * 1000003u ^ static_cast<std::size_t>(x);
        return h;
    }
};

/// A matrix operand of a (batched) product as oneDNN describes it: logical dims
/// [outer, inner, rows, cols] with the strides of how it is stored (transposed or not).
dnnl::memory::desc operand(dnnl::memory::data_type dt, std::size_t outer, std::size_t inner,
                           std::size_t rows, std::size_t cols, bool transposed, std::size_t ld,
                           const std::array<std::size_t, 2>& batch) {
    using dims = dnnl::memory::dims;
    auto d = [](std::size_t x) { return static_cast<dnnl::memory::dim>(x); };
    // A batch axis of one element has no stride to speak of; oneDNN still wants a positive one.
    auto stride = [&](std::size_t count, std::size_t s) { return d(count == 1 ? 1 : s); };
    const dims row_col = transposed ? dims{1, d(ld)} : dims{d(ld), 1};
    if (outer == 1 && inner == 1) return {{d(rows), d(cols)}, dt, row_col};
    return {{d(outer), d(inner), d(rows), d(cols)},
            dt,
            {stride(outer, batch[0]), stride(inner, batch[1]), row_col[0], row_col[1]}};
}

/// Per thread (products run on several threads at once, attention's heads for one): the
/// engine and stream, the compiled shapes, and the bfloat16 copies of the factors. Building
/// a primitive costs about 1.6 µs even when oneDNN's own cache has it, as much as a whole
/// 64x64x32 product on AMX, so shapes are looked up here first.
struct onednn_context {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::unordered_map<plan_key, plan, plan_key_hash> plans;
    std::vector<std::uint16_t> a, b;
    std::vector<float> c;

    /// The plan for C = op(A) op(B) (+ beta C): A and B of type `in`, C float32, batched as
    /// `batch` says (ldc and batch.c give C's layout).
    plan& find(dnnl::memory::data_type in, bool trans_a, bool trans_b, std::size_t m, std::size_t n,
               std::size_t k, std::size_t lda, std::size_t ldb, std::size_t ldc, float beta,
               const batch_strides& batch, bool with_bias = false) {
        std::uint32_t beta_bits = 0;
        std::memcpy(&beta_bits, &beta, sizeof beta_bits);
        auto i = [](std::size_t x) { return static_cast<std::int64_t>(x); };
        const plan_key key{{static_cast<std::int64_t>(in), trans_a, trans_b, i(m), i(n), i(k),
                            i(lda), i(ldb), i(ldc), beta_bits, i(batch.outer), i(batch.inner),
                            i(batch.a[0]), i(batch.a[1]), i(batch.b[0]), i(batch.b[1]),
                            i(batch.c[0]), i(batch.c[1]), with_bias}};
        if (const auto it = plans.find(key); it != plans.end()) return it->second;
        // A model has a few dozen shapes; a program that keeps making new ones (varying
        // sequence lengths) must not grow this without bound.
        if (plans.size() >= 512) plans.clear();
        using dt = dnnl::memory::data_type;
        const auto o = batch.outer, in_ = batch.inner;
        const auto ad = operand(in, o, in_, m, k, trans_a, lda, batch.a);
        const auto bd = operand(in, o, in_, k, n, trans_b, ldb, batch.b);
        const auto cd = operand(dt::f32, o, in_, m, n, false, ldc, batch.c);
        dnnl::primitive_attr attr;
        if (beta != 0.0f) { // C = beta C + A B
            dnnl::post_ops ops;
            ops.append_sum(beta);
            attr.set_post_ops(ops);
        }
        // A bias is one row, added to every row of C (plans with a bias are not batched).
        const dnnl::memory::desc biasd =
            with_bias ? operand(dt::f32, 1, 1, 1, n, false, n, {}) : dnnl::memory::desc();
        const dnnl::matmul::primitive_desc pd(with_bias ? dnnl::matmul::desc(ad, bd, biasd, cd)
                                                        : dnnl::matmul::desc(ad, bd, cd),
                                              attr, engine);
        return plans
            .emplace(key, plan{dnnl::matmul(pd), dnnl::memory(ad, engine, nullptr),
                               dnnl::memory(bd, engine, nullptr), dnnl::memory(cd, engine, nullptr),
                               with_bias ? dnnl::memory(biasd, engine, nullptr) : dnnl::memory()})
            .first->second;
    }

    void run(plan& p, const void* a_data, const void* b_data, float* c_data,
             const float* bias = nullptr) {
        p.a.set_data_handle(const_cast<void*>(a_data)); // oneDNN's handles are not const
        p.b.set_data_handle(const_cast<void*>(b_data));
        p.c.set_data_handle(c_data);
        if (!bias) {
            p.product.execute(stream,
                              {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}});
            return;
        }
        p.bias.set_data_handle(const_cast<float*>(bias));
        p.product.execute(stream, {{DNNL_ARG_SRC, p.a},
                                   {DNNL_ARG_WEIGHTS, p.b},
                                   {DNNL_ARG_BIAS, p.bias},
                                   {DNNL_ARG_DST, p.c}});
    }
};

onednn_context& onednn() {
    thread_local onednn_context ctx;
    return ctx;
}

/// The process's float32 products go to oneDNN (decided once: backend_info is a
/// function-local constant).
bool onednn_selected() {
    static const bool onednn = backend_info().library == matmul_library::onednn;
    return onednn;
}

/// oneDNN's float32 kernels apply: it is selected, and no bfloat16 precision scope is active.
bool onednn_float32() {
    return onednn_selected() && current_matmul_precision() == matmul_precision::float32;
}

/// C = op(A) op(B) (+ beta C) with both factors rounded to bfloat16 and float32 accumulation.
void gemm_bf16(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
               const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
               std::size_t ldc, float beta) {
    onednn_context& ctx = onednn();
    const std::size_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const std::size_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    ctx.a.resize(std::max(ctx.a.size(), m * k));
    ctx.b.resize(std::max(ctx.b.size(), k * n));
    round_to_bf16(a, a_rows, a_cols, lda, ctx.a.data());
    round_to_bf16(b, b_rows, b_cols, ldb, ctx.b.data());
    const bool dense = ldc == n;
    // The rounded factors are dense; the result too, where oneDNN picks its AMX kernels (a
    // strided result gets the slower generic ones), so a strided result goes through `c`
    // and is added into place.
    plan& p = ctx.find(dnnl::memory::data_type::bf16, trans_a, trans_b, m, n, k, a_cols, b_cols, n,
                       dense ? beta : 0.0f, {});
    if (!dense) ctx.c.resize(std::max(ctx.c.size(), m * n));
    float* out = dense ? c : ctx.c.data();
    ctx.run(p, ctx.a.data(), ctx.b.data(), out);
    if (dense) return;
    for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j)
            c[i * ldc + j] = beta == 0.0f ? out[i * n + j] : beta * c[i * ldc + j] + out[i * n + j];
}

} // namespace
#endif

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, float beta) {
    if (m == 0 || n == 0) return;
    if (k == 0) return empty_product(m, n, c, ldc, beta);
#ifdef PARAMTREE_HAVE_ONEDNN
    if (current_matmul_precision() == matmul_precision::bfloat16) {
        try {
            return gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta);
        } catch (const dnnl::error&) {
            // oneDNN has no bfloat16 kernel for this case: the float32 product is the more
            // precise answer, not a wrong one.
        }
    }
    if (onednn_selected()) {
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', static_cast<dnnl_dim_t>(m),
                   static_cast<dnnl_dim_t>(n), static_cast<dnnl_dim_t>(k), 1.0f, a,
                   static_cast<dnnl_dim_t>(lda), b, static_cast<dnnl_dim_t>(ldb), beta, c,
                   static_cast<dnnl_dim_t>(ldc));
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), 1.0f, a,
                as_int(lda), b, as_int(ldb), beta, c, as_int(ldc));
}

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          std::size_t lda, const double* b, std::size_t ldb, double* c, std::size_t ldc,
          double beta) {
    if (m == 0 || n == 0) return;
    if (k == 0) return empty_product(m, n, c, ldc, beta);
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), as_int(m), as_int(n), as_int(k), 1.0, a,
                as_int(lda), b, as_int(ldb), beta, c, as_int(ldc));
}

namespace {
/// gemm_bias without an epilogue: the bias in every row of C, then C += A Bᵀ.
template <class T>
void bias_rows_then_product(std::size_t m, std::size_t n, std::size_t k, const T* a, const T* b,
                            const T* bias, T* c) {
    for (std::size_t r = 0; r < m; ++r)
        std::copy_n(bias, n, c + r * n);
    gemm(false, true, m, n, k, a, b, c, T{1});
}
} // namespace

void gemm_bias(std::size_t m, std::size_t n, std::size_t k, const float* a, const float* b,
               const float* bias, float* c) {
#ifdef PARAMTREE_HAVE_ONEDNN
    if (onednn_float32() && m > 0 && n > 0 && k > 0) {
        onednn_context& ctx = onednn();
        plan& p =
            ctx.find(dnnl::memory::data_type::f32, false, true, m, n, k, k, k, n, 0.0f, {}, true);
        ctx.run(p, a, b, c, bias);
        return;
    }
#endif
    bias_rows_then_product(m, n, k, a, b, bias, c);
}
void gemm_bias(std::size_t m, std::size_t n, std::size_t k, const double* a, const double* b,
               const double* bias, double* c) {
    bias_rows_then_product(m, n, k, a, b, bias, c);
}

namespace {
/// The batch one product at a time, split across threads: a run of products per thread large
/// enough (about 2 Mflop) to pay for waking it.
template <class T>
void gemm_each(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T* c, std::size_t ldc, T beta,
               const batch_strides& batch) {
    const std::size_t flops = std::max<std::size_t>(1, 2 * m * n * k);
    const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 21) / flops);
    parallel_for(batch.outer * batch.inner, grain, [&](std::size_t lo, std::size_t hi) {
        for (std::size_t p = lo; p < hi; ++p) {
            const std::size_t i = p / batch.inner, j = p % batch.inner;
            gemm(trans_a, trans_b, m, n, k, a + i * batch.a[0] + j * batch.a[1], lda,
                 b + i * batch.b[0] + j * batch.b[1], ldb, c + i * batch.c[0] + j * batch.c[1], ldc,
                 beta);
        }
    });
}
} // namespace

void gemm_batched(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                  const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
                  std::size_t ldc, float beta, const batch_strides& batch) {
    if (batch.outer == 0 || batch.inner == 0 || m == 0 || n == 0) return;
#ifdef PARAMTREE_HAVE_ONEDNN
    // One product goes the way gemm sends it (dnnl_sgemm), through gemm_each.
    if (onednn_float32() && k > 0 && batch.outer * batch.inner > 1) {
        onednn_context& ctx = onednn();
        plan& p = ctx.find(dnnl::memory::data_type::f32, trans_a, trans_b, m, n, k, lda, ldb, ldc,
                           beta, batch);
        ctx.run(p, a, b, c);
        return;
    }
#endif
    gemm_each(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta, batch);
}

void gemm_batched(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                  const double* a, std::size_t lda, const double* b, std::size_t ldb, double* c,
                  std::size_t ldc, double beta, const batch_strides& batch) {
    if (batch.outer == 0 || batch.inner == 0 || m == 0 || n == 0) return;
    gemm_each(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, beta, batch);
}

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float* c, float beta) {
    gemm(trans_a, trans_b, m, n, k, a, trans_a ? m : k, b, trans_b ? k : n, c, n, beta);
}
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          const double* b, double* c, double beta) {
    gemm(trans_a, trans_b, m, n, k, a, trans_a ? m : k, b, trans_b ? k : n, c, n, beta);
}

} // namespace paramtree::kernels
