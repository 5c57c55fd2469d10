// paramtree — the precision of float32 matrix products (see <paramtree/precision.hpp>).
#include <paramtree/precision.hpp>

#include <fmt/format.h>
#ifdef PARAMTREE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace paramtree {

namespace {
// What the innermost precision_scope of this thread asked for. Thread-local like the tape's
// enclosing scope: two threads training two models never see each other's setting.
thread_local matmul_precision requested = matmul_precision::float32;
} // namespace

const char* to_string(matmul_precision p) noexcept {
    return p == matmul_precision::bfloat16 ? "bfloat16" : "float32";
}

bool bfloat16_matmul_available() noexcept {
#ifdef PARAMTREE_HAVE_ONEDNN
    // Decided once: oneDNN reads the CPU (and DNNL_MAX_CPU_ISA) once per process too. The ISA
    // values are bit sets, each level containing the ones below it.
    static const bool available = [] {
        const unsigned isa = dnnl_get_effective_cpu_isa();
        const unsigned bf16 = dnnl_cpu_isa_avx512_core_bf16;
        return (isa & bf16) == bf16;
    }();
    return available;
#else
    return false;
#endif
}

matmul_precision current_matmul_precision() noexcept {
    if (requested == matmul_precision::float32) return requested;
    // The check is a function-local static after its first call; noexcept holds because
    // dnnl_get_effective_cpu_isa is a C function.
    return bfloat16_matmul_available() ? requested : matmul_precision::float32;
}

precision_scope::precision_scope(matmul_precision p) noexcept : previous_(requested) {
    requested = p;
}
precision_scope::~precision_scope() {
    requested = previous_;
}

std::string bfloat16_matmul_notice(matmul_precision p) {
    if (p == matmul_precision::float32 || bfloat16_matmul_available()) return {};
#ifdef PARAMTREE_HAVE_ONEDNN
    return "paramtree: this CPU has no bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16) "
           "that oneDNN can use: matrix products run in float32";
#else
    return "paramtree: this build has no oneDNN (meson option matmul): bfloat16 matrix "
           "products are unavailable, they run in float32";
#endif
}

} // namespace paramtree
