// Tests for <paramtree/pool.hpp>: max and average pooling values, gradients (including where
// ties and padding route them), and shape errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/check_grad.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/pool.hpp>

namespace pt = paramtree;
using gradcheck::rand;

TEST_CASE("pooling: values of small windows by hand", "[pool]") {
    const auto x = pt::array::from_vector<float>({1, 1, 4, 4}, {1, 2, 3, 4,    //
                                                                5, 6, 7, 8,    //
                                                                9, 10, 11, 12, //
                                                                13, 14, 15, 16});
    CHECK(pt::max_pool2d(x).to_doubles() == std::vector<double>{6, 8, 14, 16});
    CHECK(pt::avg_pool2d(x).to_doubles() == std::vector<double>{3.5, 5.5, 11.5, 13.5});
    // 3x3 windows, stride 2, padding 1: padding never wins a max, and counts in the mean.
    const pt::pool2d_options o{.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}};
    CHECK(pt::max_pool2d(x, o).to_doubles() == std::vector<double>{6, 8, 14, 16});
    CHECK(pt::avg_pool2d(x, o).item(0) == Approx((1 + 2 + 5 + 6) / 9.0));
    const auto negative = pt::array::full({1, 1, 2, 2}, -3.0);
    CHECK(pt::max_pool2d(negative, {.kernel = {2, 2}, .padding = {1, 1}}).to_doubles() ==
          std::vector<double>{-3, -3, -3, -3});
}

TEST_CASE("pooling: gradients match finite differences; a tied max sends it to the first",
          "[pool]") {
    const pt::pool2d_options options[] = {
        {},
        {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}},
        {.kernel = {3, 2}, .stride = {1, 2}, .padding = {1, 0}},
    };
    std::uint32_t seed = 50;
    for (const auto& o : options) {
        const pt::array x = rand(seed++, {2, 3, 7, 6});
        auto mx = [&](const pt::array& v) { return pt::max_pool2d(v, o); };
        auto av = [&](const pt::array& v) { return pt::avg_pool2d(v, o); };
        const auto r1 = pt::check_grad(mx, std::tuple{x});
        const auto r2 = pt::check_grad(av, std::tuple{x});
        INFO(r1.to_string() << "; " << r2.to_string());
        CHECK(r1);
        CHECK(r2);
    }
    const auto flat = pt::array::ones({1, 1, 2, 2}, pt::dtype::float64);
    const auto g = pt::grad([](const pt::array& v) { return pt::sum(pt::max_pool2d(v)); })(flat);
    CHECK(g.as_array().to_doubles() == std::vector<double>{1, 0, 0, 0});
}

TEST_CASE("pooling: bad shapes and windows are refused", "[pool][errors]") {
    CHECK_THROWS_MATCHES(
        pt::max_pool2d(pt::array::ones({4, 4})), pt::shape_error,
        Catch::Message("max_pool2d: at <root>: expected x [N, C, H, W], found f32[4,4]"));
    CHECK_THROWS_WITH(
        pt::avg_pool2d(pt::array::ones({1, 1, 4, 4}), {.kernel = {2, 2}, .padding = {2, 0}}),
        Catch::Contains("a padding at most half the kernel"));
    CHECK_THROWS_WITH(pt::max_pool2d(pt::array::ones({1, 1, 1, 4})),
                      Catch::Contains("an input at least 2 along the height"));
    CHECK_THROWS_WITH(pt::max_pool2d(pt::array::ones({1, 1, 4, 4}), {.kernel = {0, 2}}),
                      Catch::Contains("a positive kernel"));
}
