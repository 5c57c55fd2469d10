// paramtree — matrix products: float32 through the process's matmul library (oneDNN's JIT
// sgemm where the build has it, else the system BLAS), float64 through the system BLAS
// (oneDNN has no dgemm). Row-major throughout; leading dimensions let callers multiply
// strided sub-matrices (one attention head inside [t, dim] rows) without copying them.
#include "kernels.hpp"

#include <paramtree/backend.hpp>

#include <algorithm>

#include <cblas.h>
#ifdef PARAMTREE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
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

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, float beta) {
    if (m == 0 || n == 0) return;
    if (k == 0) return empty_product(m, n, c, ldc, beta);
#ifdef PARAMTREE_HAVE_ONEDNN
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
