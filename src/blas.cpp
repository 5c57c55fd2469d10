// paramtree — matrix products: float32 through the process's matmul library (oneDNN's JIT
// sgemm where the build has it, else the system BLAS), float64 through the system BLAS
// (oneDNN has no dgemm). Row-major throughout; leading dimensions let callers multiply
// strided sub-matrices (one attention head inside [t, dim] rows) without copying them.
#include "kernels.hpp"

#include <paramtree/backend.hpp>

#include <paramtree/precision.hpp>

#include <algorithm>
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

/// One shape of bfloat16 product, as oneDNN's matmul primitive compiled it, with memory
/// objects whose data handles are re-pointed at each call.
struct bf16_plan {
    dnnl::matmul product;
    dnnl::memory a, b, c;
};

struct bf16_key {
    bool trans_a, trans_b;
    std::size_t m, n, k;
    float beta;
    bool operator==(const bf16_key&) const = default;
};
struct bf16_key_hash {
    std::size_t operator()(const bf16_key& key) const noexcept {
        std::size_t h = key.trans_a * 2u + key.trans_b;
        for (const std::size_t v : {key.m, key.n, key.k})
            h = h * 1000003u ^ v;
        std::uint32_t bits = 0;
        std::memcpy(&bits, &key.beta, sizeof bits);
        return h * 1000003u ^ bits;
    }
};

/// Per thread (products run on several threads at once, attention's heads for one): the
/// engine and stream, the compiled shapes, and the bfloat16 copies of the factors. Building
/// a primitive costs about 1.6 µs even when oneDNN's own cache has it, as much as a whole
/// 64x64x32 product on AMX, so shapes are looked up here first.
struct bf16_context {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::unordered_map<bf16_key, bf16_plan, bf16_key_hash> plans;
    std::vector<std::uint16_t> a, b;
    std::vector<float> c;

    bf16_plan& plan(const bf16_key& key) {
        if (const auto it = plans.find(key); it != plans.end()) return it->second;
        // A model has a few dozen shapes; a program that keeps making new ones (varying
        // sequence lengths) must not grow this without bound.
        if (plans.size() >= 512) plans.clear();
        using dt = dnnl::memory::data_type;
        const auto m = static_cast<dnnl::memory::dim>(key.m);
        const auto n = static_cast<dnnl::memory::dim>(key.n);
        const auto k = static_cast<dnnl::memory::dim>(key.k);
        // The factors are stored as given (transposed or not) and described by strides;
        // the result is dense, where oneDNN picks its AMX kernels (a strided result gets
        // the slower generic ones, so strided results go through `c`).
        const dnnl::memory::desc ad(
            {m, k}, dt::bf16, key.trans_a ? dnnl::memory::dims{1, m} : dnnl::memory::dims{k, 1});
        const dnnl::memory::desc bd(
            {k, n}, dt::bf16, key.trans_b ? dnnl::memory::dims{1, k} : dnnl::memory::dims{n, 1});
        const dnnl::memory::desc cd({m, n}, dt::f32, dnnl::memory::dims{n, 1});
        dnnl::primitive_attr attr;
        if (key.beta != 0.0f) { // C = beta C + A B
            dnnl::post_ops ops;
            ops.append_sum(key.beta);
            attr.set_post_ops(ops);
        }
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), attr, engine);
        return plans
            .emplace(key, bf16_plan{dnnl::matmul(pd), dnnl::memory(ad, engine, nullptr),
                                    dnnl::memory(bd, engine, nullptr),
                                    dnnl::memory(cd, engine, nullptr)})
            .first->second;
    }
};

/// C = op(A) op(B) (+ beta C) with both factors rounded to bfloat16 and float32 accumulation.
void gemm_bf16(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
               const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
               std::size_t ldc, float beta) {
    thread_local bf16_context ctx;
    const std::size_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const std::size_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    ctx.a.resize(std::max(ctx.a.size(), m * k));
    ctx.b.resize(std::max(ctx.b.size(), k * n));
    round_to_bf16(a, a_rows, a_cols, lda, ctx.a.data());
    round_to_bf16(b, b_rows, b_cols, ldb, ctx.b.data());
    const bool dense = ldc == n;
    // A strided result is computed densely, then added into place.
    bf16_plan& p = ctx.plan(bf16_key{trans_a, trans_b, m, n, k, dense ? beta : 0.0f});
    if (!dense) ctx.c.resize(std::max(ctx.c.size(), m * n));
    float* out = dense ? c : ctx.c.data();
    p.a.set_data_handle(ctx.a.data());
    p.b.set_data_handle(ctx.b.data());
    p.c.set_data_handle(out);
    p.product.execute(ctx.stream,
                      {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}});
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
    // Decided once per process (backend_info is a function-local constant).
    static const bool onednn = backend_info().library == matmul_library::onednn;
    if (onednn) {
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

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float* c, float beta) {
    gemm(trans_a, trans_b, m, n, k, a, trans_a ? m : k, b, trans_b ? k : n, c, n, beta);
}
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          const double* b, double* c, double beta) {
    gemm(trans_a, trans_b, m, n, k, a, trans_a ? m : k, b, trans_b ? k : n, c, n, beta);
}

} // namespace paramtree::kernels
