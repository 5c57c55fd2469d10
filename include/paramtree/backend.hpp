// paramtree — the compute backend of this process: which library multiplies matrices, which
// kernels it runs on this CPU, which vector ISA paramtree's own kernels use, and how many
// threads they may take. Chosen once, when first needed; reported so that a user can see
// what runs (and be warned when a library silently falls back to generic code).
#pragma once

#include <string>

namespace paramtree {

/// The libraries that multiply float32 matrices.
enum class matmul_library {
    /// oneDNN: JIT kernels for the CPU it finds (SSE4.1 ... AVX-512, AMX), the CPU primitive
    /// library PyTorch uses. The default where the build found it.
    onednn,
    /// The system BLAS (Debian: OpenBLAS), whose kernels depend on the core it detects.
    openblas,
};

/// What `backend_info()` reports.
struct compute_backend {
    matmul_library library = matmul_library::openblas;
    /// `oneDNN 2.6.3` or `OpenBLAS 0.3.21 ...`.
    std::string name;
    /// The kernels the matmul library runs here: oneDNN's JIT ISA (`avx512_core_amx`) or
    /// OpenBLAS's core (`SkylakeX`, `Prescott`, ...).
    std::string kernel;
    /// The vector ISA of paramtree's own elementwise, reduction and optimizer kernels
    /// (`avx512`, `avx2` or `sse2`); see `PARAMTREE_ISA`.
    std::string isa;
    /// Threads the matmul library and paramtree's parallel kernels use.
    int threads = 1;
    /// One line when the matmul library runs generic kernels on a CPU that supports more
    /// (OpenBLAS 0.3.21 falls back to its Prescott kernels on CPUs it does not know); empty
    /// otherwise.
    std::string warning;
};

/// The backend of this process. The matmul library is oneDNN when the build found it (meson
/// option `matmul`), else the system BLAS; `PARAMTREE_MATMUL=openblas|onednn` overrides it at
/// run time, `PARAMTREE_NUM_THREADS=N` sets the threads (default: the libraries' own
/// default, all cores). float64 products always use the system BLAS (oneDNN has no dgemm).
///
///     const pt::compute_backend& b = pt::backend_info();
///     std::cout << pt::to_string(b) << "\n";  // matmul: oneDNN 2.6.3 (avx512_core_amx), ...
///     if (!b.warning.empty()) std::cerr << b.warning << "\n";
[[nodiscard]] const compute_backend& backend_info();

/// One line for banners: `matmul: oneDNN 2.6.3 (avx512_core_amx), kernels: avx512, 2 threads`.
[[nodiscard]] std::string to_string(const compute_backend& b);

} // namespace paramtree
