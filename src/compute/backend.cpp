// paramtree — the compute backend of the process (see <paramtree/backend.hpp>).
#include <paramtree/backend.hpp>
#include <paramtree/error.hpp>

#include "compute/kernels.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include <cblas.h>
#include <fmt/format.h>
#ifdef PARAMTREE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

namespace paramtree {

namespace {

std::string_view env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string_view(v) : std::string_view();
}

/// OpenBLAS cores that run generic SSE code: what 0.3.21 picks for CPUs it does not know.
bool generic_core(std::string_view core) {
    constexpr std::array generic = {"Prescott", "Core2",  "Penryn", "Dunnington",
                                    "Nehalem",  "Katmai", "Atom",   "Banias"};
    return std::any_of(generic.begin(), generic.end(), [&](const char* g) { return core == g; });
}

#ifdef PARAMTREE_HAVE_ONEDNN
std::string onednn_isa() {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
        return "sse41";
    case dnnl_cpu_isa_avx:
        return "avx";
    case dnnl_cpu_isa_avx2:
        return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
        return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
        return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
        return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
        return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
        return "avx512_core_amx";
    default:
        return "other";
    }
}
#endif

// ---- the default thread count ------------------------------------------------------------

/// CPUs this process may run on: its affinity mask (taskset, a container's cpuset).
int allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

/// The CPU time the process's cgroup may use, in CPUs (cgroup v2 `cpu.max`, v1
/// `cpu.cfs_quota_us`), rounded up; 0 when there is no quota.
int cgroup_cpus() {
    const auto ratio = [](double quota, double period) {
        return quota > 0 && period > 0 ? static_cast<int>(std::ceil(quota / period)) : 0;
    };
    if (std::ifstream v2("/sys/fs/cgroup/cpu.max"); v2) {
        std::string quota;
        double period = 0;
        v2 >> quota >> period;
        if (quota == "max") return 0;
        double q = 0;
        std::istringstream(quota) >> q;
        return ratio(q, period);
    }
    std::ifstream q1("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
    std::ifstream p1("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    double q = 0, period = 0;
    if (q1 >> q && p1 >> period) return ratio(q, period);
    return 0;
}

/// Runnable threads on the machine now (`procs_running` of /proc/stat, the calling thread
/// included), or -1 when unknown.
int running_threads() {
    std::ifstream in("/proc/stat");
    std::string key;
    long long value = 0;
    while (in >> key) {
        if (key == "procs_running" && in >> value) return static_cast<int>(value);
        in.ignore(1 << 20, '\n');
    }
    return -1;
}

/// Runnable threads of this process (state R in /proc/self/task/*/stat), the calling thread
/// included: OpenBLAS starts its pool when it is loaded, and those threads spin for a while.
int own_running_threads() {
    int n = 0;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(task.path() / "stat");
        std::string line;
        std::getline(in, line);
        // "tid (comm) S ...": the state follows the last ')' (comm may hold one).
        const auto close = line.rfind(')');
        if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'R') ++n;
    }
    return std::max(n, 1);
}

/// Threads other processes keep busy: the least of a few samples of the machine's runnable
/// count less this process's own (a CPU-bound competitor is runnable in every sample, a
/// short-lived job is not).
int busy_elsewhere() {
    int least = -1;
    for (int i = 0; i < 5; ++i) {
        if (i != 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        const int all = running_threads();
        if (all < 0) return 0;
        const int others = std::max(0, all - own_running_threads());
        least = least < 0 ? others : std::min(least, others);
    }
    return least;
}

} // namespace

thread_budget default_thread_budget() {
    thread_budget b;
    b.allowed = allowed_cpus();
    b.quota = cgroup_cpus();
    const int usable = b.quota > 0 ? std::min(b.allowed, b.quota) : b.allowed;
    b.busy = busy_elsewhere();
    b.threads = std::clamp(usable - b.busy, 1, usable);
    return b;
}

namespace {

/// The thread count the process starts with (0: leave the libraries' own), whether the user
/// set it for paramtree (PARAMTREE_NUM_THREADS then overrides OPENBLAS_NUM_THREADS too), and
/// why (for the report).
struct thread_choice {
    int threads = 0;
    bool forced = false;
    std::string why;
};

thread_choice choose_threads() {
    const std::string_view threads = env("PARAMTREE_NUM_THREADS");
    if (!threads.empty()) {
        int n = 0;
        const auto [end, ec] = std::from_chars(threads.data(), threads.data() + threads.size(), n);
        if (ec != std::errc{} || end != threads.data() + threads.size() || n < 1)
            throw value_error("PARAMTREE_NUM_THREADS", "", "a positive integer",
                              fmt::format("'{}'", threads));
        return {n, true, "PARAMTREE_NUM_THREADS"};
    }
    // The user (or a launcher such as mpirun or the test suite) chose: keep it.
    if (!env("OMP_NUM_THREADS").empty()) return {0, false, "OMP_NUM_THREADS"};
    const thread_budget b = default_thread_budget();
    std::string why = fmt::format("{} CPU{} allowed", b.allowed, b.allowed == 1 ? "" : "s");
    if (b.quota > 0) why += fmt::format(", a cgroup quota of {}", b.quota);
    if (b.busy > 0) why += fmt::format(", {} busy with other processes", b.busy);
    return {b.threads, false, why};
}

compute_backend detect() {
    compute_backend b;
#ifdef PARAMTREE_HAVE_ONEDNN
    b.library = matmul_library::onednn;
#endif
    const std::string_view choice = env("PARAMTREE_MATMUL");
    if (choice == "openblas") {
        b.library = matmul_library::openblas;
    } else if (choice == "onednn") {
#ifndef PARAMTREE_HAVE_ONEDNN
        throw value_error("PARAMTREE_MATMUL", "", "a matmul library this build has (openblas)",
                          "onednn (built without oneDNN: meson option matmul=openblas, or "
                          "libdnnl-dev was missing)");
#endif
    } else if (!choice.empty()) {
        throw value_error("PARAMTREE_MATMUL", "", "onednn or openblas",
                          fmt::format("'{}'", choice));
    }

    // Threads: what the user set, else one per CPU the process may use that no other
    // process keeps busy. A thread that waits for a CPU held by another process stalls every
    // parallel region (OpenMP's threads spin, then sleep, at each barrier), so on a busy
    // machine all-cores lost to one thread by up to 16x.
    thread_choice chosen = choose_threads();
    if (chosen.threads > 0) {
        if (chosen.forced || env("OPENBLAS_NUM_THREADS").empty())
            openblas_set_num_threads(chosen.threads);
#ifdef PARAMTREE_HAVE_ONEDNN
        omp_set_num_threads(chosen.threads);
#endif
    }
    b.threads_reason = std::move(chosen.why);

    const std::string core = openblas_get_corename();
    const std::string level = kernels::isa_name(kernels::cpu_isa());
    if (b.library == matmul_library::onednn) {
#ifdef PARAMTREE_HAVE_ONEDNN
        const dnnl_version_t* v = dnnl_version();
        b.name = fmt::format("oneDNN {}.{}.{}", v->major, v->minor, v->patch);
        b.kernel = onednn_isa();
        b.threads = omp_get_max_threads();
#endif
    } else {
        b.name = "OpenBLAS";
        b.kernel = core;
        b.threads = openblas_get_num_threads();
        if (generic_core(core) && level != "sse2")
            b.warning = fmt::format(
                "paramtree: OpenBLAS runs its generic {} kernels on this CPU, which has {}: "
                "matrix products are several times slower than they could be. Set "
                "OPENBLAS_CORETYPE (e.g. SkylakeX or Haswell), or use oneDNN "
                "(PARAMTREE_MATMUL=onednn, the default where the build has it).",
                core, level);
    }
    b.isa = kernels::isa_name(kernels::active_isa());
    if (b.isa != level) b.isa += fmt::format(" (forced; the CPU has {})", level);
    return b;
}

} // namespace

const compute_backend& backend_info() {
    static const compute_backend b = detect();
    return b;
}

std::string to_string(const compute_backend& b) {
    return fmt::format("matmul: {} ({}), kernels: {}, {} thread{} ({})", b.name, b.kernel, b.isa,
                       b.threads, b.threads == 1 ? "" : "s", b.threads_reason);
}

} // namespace paramtree
