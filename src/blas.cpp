// paramtree — matrix products through xtensor-blas and the system BLAS (Debian: OpenBLAS).
// The only translation unit that includes xtensor-blas: buffers are adapted without copying
// (row-major, static layout), so `xt::blas::gemm` hands the raw pointers to cblas_?gemm.
#include "kernels.hpp"

#include <algorithm>
#include <array>

#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

namespace paramtree::kernels {

namespace {
template <class T>
void gemm_impl(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const T* a,
               const T* b, T* c, T beta) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        // BLAS rejects leading dimensions of 0; the product of empty factors is zero.
        for (std::size_t i = 0; i < m * n; ++i)
            c[i] = beta == T{0} ? T{0} : beta * c[i];
        return;
    }
    using shape2 = std::array<std::size_t, 2>;
    // xtensor-blas reads these through their data interface only: no element is copied.
    auto A = xt::adapt(const_cast<T*>(a), m * k, xt::no_ownership(),
                       trans_a ? shape2{k, m} : shape2{m, k});
    auto B = xt::adapt(const_cast<T*>(b), k * n, xt::no_ownership(),
                       trans_b ? shape2{n, k} : shape2{k, n});
    auto C = xt::adapt(c, m * n, xt::no_ownership(), shape2{m, n});
    xt::blas::gemm(A, B, C, trans_a, trans_b, T{1}, beta);
}
} // namespace

void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float* c, float beta) {
    gemm_impl(trans_a, trans_b, m, n, k, a, b, c, beta);
}
void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, const double* a,
          const double* b, double* c, double beta) {
    gemm_impl(trans_a, trans_b, m, n, k, a, b, c, beta);
}

} // namespace paramtree::kernels
