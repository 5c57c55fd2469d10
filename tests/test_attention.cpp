// Tests for <paramtree/attention.hpp>: the fused attention against the composed operations it
// replaces (matmul, softmax, where), gradients against finite differences, errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/attention.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>

#include <cmath>
#include <limits>

namespace pt = paramtree;
using gradcheck::check;
using gradcheck::rand;

namespace {

/// The same attention from unfused operations: split heads, q kᵀ · scale, mask, softmax, · v.
pt::array composed(const pt::array& q, const pt::array& k, const pt::array& v, std::size_t heads,
                   bool causal) {
    const bool batched = q.ndim() == 3;
    const std::size_t b = batched ? q.shape()[0] : 1, t = q.shape()[q.ndim() - 2],
                      s = k.shape()[k.ndim() - 2], d = q.shape().back(), dh = d / heads;
    auto split = [&](const pt::array& z, std::size_t len) {
        return pt::transpose(z.reshape({b, len, heads, dh}), {0, 2, 1, 3});
    };
    pt::array scores = pt::matmul(split(q, t), pt::swapaxes(split(k, s), -1, -2)) *
                       (1.0 / std::sqrt(static_cast<double>(dh)));
    if (causal) {
        std::vector<bool> mask(t * s);
        for (std::size_t i = 0; i < t; ++i)
            for (std::size_t j = 0; j < s; ++j)
                mask[i * s + j] = j <= i;
        scores = pt::where(pt::array::from_vector<bool>({t, s}, mask), scores,
                           pt::array::full({}, -1e30, q.dtype()));
    }
    const pt::array out = pt::transpose(pt::matmul(pt::softmax(scores), split(v, s)), {0, 2, 1, 3});
    return out.reshape(q.shape());
}

} // namespace

TEST_CASE("attention: equals the composed operations, causal or not, with and without batch",
          "[attention]") {
    for (const bool causal : {false, true})
        for (const bool batched : {false, true}) {
            INFO("causal " << causal << ", batched " << batched);
            const pt::shape_type qs = batched ? pt::shape_type{2, 5, 12} : pt::shape_type{5, 12};
            const pt::shape_type ks = batched ? pt::shape_type{2, 7, 12} : pt::shape_type{7, 12};
            const pt::array q = rand(1, qs), k = rand(2, ks), v = rand(3, ks);
            const pt::array fused =
                pt::scaled_dot_product_attention(q, k, v, 3, {.causal = causal});
            CHECK(fused.shape() == qs);
            CHECK(pt::array_equal(fused, composed(q, k, v, 3, causal), 1e-12, 1e-12));
            // float32 agrees with the float64 result to float32 precision.
            const pt::array f32 = pt::scaled_dot_product_attention(
                q.astype(pt::dtype::float32), k.astype(pt::dtype::float32),
                v.astype(pt::dtype::float32), 3, {.causal = causal});
            CHECK(pt::array_equal(f32.astype(pt::dtype::float64), fused, 1e-5, 1e-5));
        }
    // An explicit scale replaces 1/sqrt(dh) (= 0.5 for dh = 4).
    const pt::array q = rand(4, {4, 8}), k = rand(5, {4, 8}), v = rand(6, {4, 8});
    const pt::array quarter = pt::scaled_dot_product_attention(q, k, v, 2, {.scale = 0.25});
    CHECK(
        pt::array_equal(quarter, pt::scaled_dot_product_attention(q * 0.5, k, v, 2), 1e-12, 1e-12));
}

TEST_CASE("attention: gradients in q, k and v match finite differences", "[attention][grad]") {
    for (const bool causal : {false, true}) {
        INFO("causal " << causal);
        check("scaled_dot_product_attention",
              [&](const std::vector<pt::array>& x) {
                  return pt::scaled_dot_product_attention(x[0], x[1], x[2], 2, {.causal = causal});
              },
              {rand(7, {2, 4, 6}), rand(8, {2, 4, 6}), rand(9, {2, 4, 6})});
        check("scaled_dot_product_attention (S != T)",
              [&](const std::vector<pt::array>& x) {
                  return pt::scaled_dot_product_attention(x[0], x[1], x[2], 3, {.causal = causal});
              },
              {rand(10, {3, 6}), rand(11, {5, 6}), rand(12, {5, 6})});
    }
}

TEST_CASE("attention: float32 gradients (one batched product per kind) equal float64's",
          "[attention][grad]") {
    // float32 runs every head's products as one batched oneDNN call; float64 one product at a
    // time. Shapes with several batches and heads, S != T, causal or not.
    for (const bool causal : {false, true}) {
        INFO("causal " << causal);
        const pt::array q = rand(13, {3, 6, 16}), k = rand(14, {3, 9, 16}),
                        v = rand(15, {3, 9, 16});
        const pt::array w = rand(16, {3, 6, 16}); // a cotangent that is not all ones
        auto loss = [&](const pt::tree& x) {
            const pt::array& a = x[0].as_array();
            return pt::sum(pt::scaled_dot_product_attention(a, x[1].as_array(), x[2].as_array(), 4,
                                                            {.causal = causal}) *
                           w.astype(a.dtype()));
        };
        const auto f32 = [](const pt::array& x) { return x.astype(pt::dtype::float32); };
        const pt::tree g64 = pt::grad(loss)(pt::tuple({q, k, v}));
        const pt::tree g32 = pt::grad(loss)(pt::tuple({f32(q), f32(k), f32(v)}));
        for (std::size_t i = 0; i < 3; ++i) {
            const pt::array a = g32[i].as_array(), b = g64[i].as_array();
            CHECK(a.dtype() == pt::dtype::float32);
            CHECK(pt::array_equal(a.astype(pt::dtype::float64), b, 1e-4, 1e-5));
        }
    }
}

TEST_CASE("attention: NaN in a row gives NaN there, not undefined behaviour", "[attention]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const pt::array q = pt::array::from_vector<float>({2, 2}, {nan, 1.f, 0.5f, 0.25f});
    const pt::array out = pt::scaled_dot_product_attention(q, q, q, 1, {.causal = true});
    CHECK(std::isnan(out.item(0)));
}

TEST_CASE("attention: shapes that do not fit are shape_errors naming the operands",
          "[attention][errors]") {
    const pt::array q = rand(1, {2, 4, 6});
    CHECK_THROWS_AS(pt::scaled_dot_product_attention(q, q, q, 4), pt::shape_error); // 6 % 4
    CHECK_THROWS_AS(pt::scaled_dot_product_attention(q, q, q, 0), pt::shape_error);
    CHECK_THROWS_AS(pt::scaled_dot_product_attention(q, rand(2, {2, 4, 8}), q, 2), pt::shape_error);
    CHECK_THROWS_AS(pt::scaled_dot_product_attention(q, q, q.astype(pt::dtype::float32), 2),
                    pt::shape_error);
    try {
        (void)pt::scaled_dot_product_attention(q, q, rand(3, {2, 5, 6}), 2);
        FAIL("no error");
    } catch (const pt::shape_error& e) {
        CHECK(std::string(e.what()).find("f64[2,5,6]") != std::string::npos);
    }
}
