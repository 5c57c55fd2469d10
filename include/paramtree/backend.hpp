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
    /// Why that many: `PARAMTREE_NUM_THREADS`, `OMP_NUM_THREADS`, or the default's reasons
    /// (`2 CPUs allowed, 1 busy with other processes`).
    std::string threads_reason;
    /// One line when the matmul library runs generic kernels on a CPU that supports more
    /// (OpenBLAS 0.3.21 falls back to its Prescott kernels on CPUs it does not know); empty
    /// otherwise.
    std::string warning;
};

/// What the default thread count is made of (`default_thread_budget`).
struct thread_budget {
    int allowed = 1; ///< CPUs in the process's affinity mask
    int quota = 0;   ///< the cgroup's CPU quota, rounded up (0: none)
    int busy = 0;    ///< runnable threads of other processes when it was measured
    int threads = 1; ///< min(allowed, quota) - busy, at least 1
};

/// The default thread count, measured now: one thread per CPU the process may use (affinity
/// mask and cgroup quota) that other processes do not keep busy (the runnable count of
/// /proc/stat, least of five samples 2 ms apart). `backend_info()` applies it once, when the
/// backend is first used, unless `PARAMTREE_NUM_THREADS` or `OMP_NUM_THREADS` is set.
///
///     const pt::thread_budget b = pt::default_thread_budget();
///     assert(b.threads >= 1 && b.threads <= b.allowed);
[[nodiscard]] thread_budget default_thread_budget();

/// The backend of this process. The matmul library is oneDNN when the build found it (meson
/// option `matmul`), else the system BLAS; `PARAMTREE_MATMUL=openblas|onednn` overrides it at
/// run time, `PARAMTREE_NUM_THREADS=N` sets the threads (default: `default_thread_budget()`,
/// one per CPU this process may use that other processes do not keep busy; `OMP_NUM_THREADS`,
/// when set, is kept). float64 products always use the system BLAS (oneDNN has no dgemm).
///
///     const pt::compute_backend& b = pt::backend_info();
///     std::cout << pt::to_string(b) << "\n";  // matmul: oneDNN 2.6.3 (avx512_core_amx), ...
///     if (!b.warning.empty()) std::cerr << b.warning << "\n";
[[nodiscard]] const compute_backend& backend_info();

/// One line for banners: `matmul: oneDNN 2.6.3 (avx512_core_amx), kernels: avx512, 1 thread
/// (2 CPUs allowed, 1 busy with other processes)`.
[[nodiscard]] std::string to_string(const compute_backend& b);

} // namespace paramtree
