// paramtree — the compute backend of the process (see <paramtree/backend.hpp>).
#include <paramtree/backend.hpp>
#include <paramtree/error.hpp>

#include "kernels.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <string_view>

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

    const std::string_view threads = env("PARAMTREE_NUM_THREADS");
    if (!threads.empty()) {
        int n = 0;
        const auto [end, ec] = std::from_chars(threads.data(), threads.data() + threads.size(), n);
        if (ec != std::errc{} || end != threads.data() + threads.size() || n < 1)
            throw value_error("PARAMTREE_NUM_THREADS", "", "a positive integer",
                              fmt::format("'{}'", threads));
        openblas_set_num_threads(n);
#ifdef PARAMTREE_HAVE_ONEDNN
        omp_set_num_threads(n);
#endif
    }

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
    return fmt::format("matmul: {} ({}), kernels: {}, {} thread{}", b.name, b.kernel, b.isa,
                       b.threads, b.threads == 1 ? "" : "s");
}

} // namespace paramtree
