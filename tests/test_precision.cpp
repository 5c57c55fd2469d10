// Tests for <paramtree/precision.hpp>: bfloat16 products with float32 accumulation, the scope
// that asks for them, their reach into backward passes and worker threads, and the fallback.
#include <catch2/catch.hpp>

#include <paramtree/attention.hpp>
#include <paramtree/autodiff.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/precision.hpp>
#include <paramtree/random.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace pt = paramtree;

namespace {

/// float -> bfloat16 -> float, to nearest with ties to even: written here with integer
/// arithmetic, independently of the library's (which uses the CPU's instruction).
float round_bf16(float f) {
    std::uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float r = 0;
    std::memcpy(&r, &u, sizeof r);
    return r;
}

/// `x` (float32) with every element rounded to bfloat16, as float64.
pt::array rounded(const pt::array& x) {
    const auto v = x.values<float>();
    return pt::array::build<double>(x.shape(), [&](std::span<double> out) {
        for (std::size_t i = 0; i < v.size(); ++i)
            out[i] = round_bf16(v[i]);
    });
}

pt::array normal(std::uint64_t seed, pt::shape_type shape) {
    return pt::random::normal(pt::random::make_key(seed), std::move(shape));
}

/// 1 + 2^-10: a float32 that bfloat16 rounds to exactly 1 (8 significant bits).
constexpr float one_plus = 1.0f + 1.0f / 1024.0f;

const bool available = pt::bfloat16_matmul_available();

} // namespace

TEST_CASE("precision: float32 by default; scopes nest and restore", "[precision]") {
    CHECK(pt::current_matmul_precision() == pt::matmul_precision::float32);
    {
        const pt::precision_scope outer(pt::matmul_precision::bfloat16);
        CHECK(pt::current_matmul_precision() ==
              (available ? pt::matmul_precision::bfloat16 : pt::matmul_precision::float32));
        {
            const pt::precision_scope inner(pt::matmul_precision::float32);
            CHECK(pt::current_matmul_precision() == pt::matmul_precision::float32);
        }
        CHECK(pt::current_matmul_precision() ==
              (available ? pt::matmul_precision::bfloat16 : pt::matmul_precision::float32));
    }
    CHECK(pt::current_matmul_precision() == pt::matmul_precision::float32);
    CHECK(std::string(pt::to_string(pt::matmul_precision::bfloat16)) == "bfloat16");
    CHECK(pt::bfloat16_matmul_notice(pt::matmul_precision::float32).empty());
    CHECK(pt::bfloat16_matmul_notice(pt::matmul_precision::bfloat16).empty() == available);
}

TEST_CASE("precision: bfloat16 products are the exact products of the rounded factors, "
          "accumulated in float32",
          "[precision]") {
    if (!available) {
        WARN("no bfloat16 matrix instructions here (see the fallback test)");
        return;
    }
    // Plain, both transpose flags (linear is x wᵀ; its weight gradient is gᵀ x), a bias
    // accumulated into the result, skinny and tiny shapes.
    const std::vector<std::array<std::size_t, 3>> shapes = {
        {1, 1, 1}, {3, 5, 7}, {8, 32, 32}, {64, 64, 32}, {1024, 96, 128}, {130, 17, 257}};
    for (const auto& [m, k, n] : shapes) {
        INFO(m << "x" << k << "x" << n);
        const pt::array a = normal(1, {m, k}), b = normal(2, {k, n}), w = normal(3, {n, k});
        const pt::array bias = normal(4, {n});
        const double atol = 1e-5 * std::sqrt(static_cast<double>(k));
        const pt::array exact = pt::matmul(rounded(a), rounded(b));
        const pt::array exact_linear =
            pt::linear(rounded(a), rounded(w), bias.astype(pt::dtype::float64));
        const pt::array exact_at = pt::matmul(pt::transpose(rounded(b)), rounded(pt::transpose(a)));
        const pt::precision_scope bf16(pt::matmul_precision::bfloat16);
        const pt::array product = pt::matmul(a, b);
        CHECK(product.dtype() == pt::dtype::float32);
        CHECK(pt::array_equal(product.astype(pt::dtype::float64), exact, 1e-5, atol));
        CHECK(pt::array_equal(pt::linear(a, w, bias).astype(pt::dtype::float64), exact_linear, 1e-5,
                              atol));
        // A transposed view of a materialised transpose: the strides path of the factors.
        CHECK(pt::array_equal(
            pt::matmul(pt::transpose(b), pt::transpose(a)).astype(pt::dtype::float64), exact_at,
            1e-5, atol));
        // And not the float32 product: at k >= 5 rounding the factors shows.
        if (k >= 5) {
            const pt::precision_scope f32(pt::matmul_precision::float32);
            CHECK_FALSE(pt::array_equal(pt::matmul(a, b), product, 1e-5, atol));
        }
    }
}

TEST_CASE("precision: a product computes what it is asked, exactly where the answer is exact",
          "[precision]") {
    if (!available) {
        WARN("no bfloat16 matrix instructions here");
        return;
    }
    // 1 + 2^-10 rounds to 1 in bfloat16: the sum of 64 of them is 64 exactly, against
    // 64.0625 in float32.
    const pt::array x = pt::array::full({4, 64}, one_plus), w = pt::array::ones({64, 3});
    CHECK(pt::matmul(x, w).item() == 64.0625);
    const pt::precision_scope bf16(pt::matmul_precision::bfloat16);
    CHECK(pt::matmul(x, w).item() == 64.0);
    // float64 products are never rounded.
    CHECK(pt::matmul(x.astype(pt::dtype::float64), w.astype(pt::dtype::float64)).item() == 64.0625);
}

TEST_CASE("precision: a gradient's products run at the precision of the forward pass, even "
          "after its scope ended",
          "[precision]") {
    if (!available) {
        WARN("no bfloat16 matrix instructions here");
        return;
    }
    const pt::array x = pt::array::full({32, 64}, one_plus);
    const pt::array w = normal(5, {64, 8});
    // The scope lives inside f: the backward pass runs after f returned, outside it.
    const auto loss = [&](const pt::array& w_) {
        const pt::precision_scope bf16(pt::matmul_precision::bfloat16);
        return pt::sum(pt::matmul(x, w_));
    };
    const auto [value, g] = pt::value_and_grad(loss)(w);
    // dW = xᵀ 1: every row of xᵀ sums 32 elements that bfloat16 rounds to 1.
    const pt::array dw = g.as_array();
    for (std::size_t i = 0; i < dw.size(); ++i)
        REQUIRE(dw.item(i) == 32.0);
    // The same gradient without the scope is the float32 one.
    const auto [value32, g32] =
        pt::value_and_grad([&](const pt::array& w_) { return pt::sum(pt::matmul(x, w_)); })(w);
    CHECK(g32.as_array().item(0) == 32.0 * static_cast<double>(one_plus));
}

TEST_CASE("precision: attention heads computed on worker threads use the caller's precision",
          "[precision]") {
    if (!available) {
        WARN("no bfloat16 matrix instructions here");
        return;
    }
    // q = k = 0 makes every attention weight 1/64 (exact in bfloat16), and v = 1 + 2^-10
    // rounds to 1: each output is 1 exactly when p v ran in bfloat16, 1 + 2^-10 in float32.
    // 8 batches x 8 heads spread over the threads the suite runs with.
    const std::size_t batch = 8, t = 64, heads = 8, d = 8 * 32;
    const pt::array q = pt::array::zeros({batch, t, d});
    const pt::array v = pt::array::full({batch, t, d}, one_plus);
    const pt::array y32 = pt::scaled_dot_product_attention(q, q, v, heads);
    CHECK(y32.item(0) == static_cast<double>(one_plus));
    const pt::precision_scope bf16(pt::matmul_precision::bfloat16);
    const pt::array y = pt::scaled_dot_product_attention(q, q, v, heads);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
        wrong += y.item(i) != 1.0;
    CHECK(wrong == 0);
}

TEST_CASE("precision: without the matrix instructions, bfloat16 falls back to float32 and says "
          "so",
          "[precision]") {
    if (available) {
        CHECK(pt::bfloat16_matmul_notice(pt::matmul_precision::bfloat16).empty());
        SUCCEED("the fallback runs in docs/examples/char_lm_bf16_fallback (DNNL_MAX_CPU_ISA)");
        return;
    }
    const std::string notice = pt::bfloat16_matmul_notice(pt::matmul_precision::bfloat16);
    CHECK(notice.find("float32") != std::string::npos);
    const pt::array x = pt::array::full({4, 64}, one_plus), w = pt::array::ones({64, 3});
    const pt::precision_scope bf16(pt::matmul_precision::bfloat16);
    CHECK(pt::current_matmul_precision() == pt::matmul_precision::float32);
    CHECK(pt::matmul(x, w).item() == 64.0625);
}
