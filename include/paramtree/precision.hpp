// paramtree — the precision of float32 matrix products: float32 throughout (the default), or
// bfloat16 inputs with float32 accumulation and output on the CPU's matrix units (AMX-BF16,
// AVX512-BF16), the mixed precision of PyTorch's CPU autocast. Parameters, gradients and
// optimizer state stay float32 either way: only the factors of each product are rounded.
#pragma once

#include <cstdint>
#include <string>

namespace paramtree {

/// How float32 matrix products (matmul, linear, attention, convolution, and their backward
/// passes) compute. float64 products are never affected.
enum class matmul_precision : std::uint8_t {
    /// float32 factors, float32 accumulation: the default.
    float32,
    /// Both factors rounded to bfloat16 (to nearest, ties to even), products accumulated in
    /// float32, the result float32. About 3 significant decimal digits per factor; on a CPU
    /// with AMX several times the float32 throughput. Falls back to float32 where the CPU
    /// (or the build) has no bfloat16 matrix instructions: see `bfloat16_matmul_notice`.
    bfloat16,
};

/// `float32` or `bfloat16`.
[[nodiscard]] const char* to_string(matmul_precision p) noexcept;

/// The precision float32 products use on this thread now: what the innermost live
/// `precision_scope` asked for (float32 outside any), or float32 if the CPU cannot do it.
///
///     assert(pt::current_matmul_precision() == pt::matmul_precision::float32);
[[nodiscard]] matmul_precision current_matmul_precision() noexcept;

/// Sets the precision of float32 products on this thread for the object's lifetime (scopes
/// nest; each restores the one before). Operations recorded for a gradient keep the
/// precision they ran under, so their backward products use it too even when the gradient is
/// computed after the scope ends; parallel kernels carry it into their worker threads.
///
///     const auto w = pt::array::ones({64, 64}), x = pt::array::ones({8, 64});
///     const auto loss = [&](const pt::array& w_) { return pt::sum(pt::matmul(x, w_)); };
///     pt::precision_scope bf16(pt::matmul_precision::bfloat16);
///     const auto [value, g] = pt::value_and_grad(loss)(w);  // both passes' products in bf16
///     assert(value.item() == 8 * 64 * 64 && g.as_array().item() == 8);   // ones are exact in bf16
class precision_scope {
public:
    explicit precision_scope(matmul_precision p) noexcept;
    ~precision_scope();
    precision_scope(const precision_scope&) = delete;
    precision_scope& operator=(const precision_scope&) = delete;

private:
    matmul_precision previous_;
};

/// Whether this process can run bfloat16 products on matrix units: the build has oneDNN and
/// oneDNN finds AVX512-BF16 or AMX-BF16 on this CPU (`DNNL_MAX_CPU_ISA` can hide them).
[[nodiscard]] bool bfloat16_matmul_available() noexcept;

/// One line for a program that asked for `p`: empty when `p` runs as asked, else why it runs
/// in float32 instead.
///
///     const std::string notice = pt::bfloat16_matmul_notice(pt::matmul_precision::bfloat16);
///     if (!notice.empty()) std::cerr << notice << "\n";
[[nodiscard]] std::string bfloat16_matmul_notice(matmul_precision p);

} // namespace paramtree
