// Tests for <paramtree/check_grad.hpp>: a right gradient passes, a wrong one is caught and
// located, ties are checked through their one stored weight, and bad input is refused.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/check_grad.hpp>
#include <paramtree/custom_vjp.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/shared.hpp>

namespace pt = paramtree;
using gradcheck::rand;

TEST_CASE("check_grad: built-in operations pass, every element counted", "[check_grad]") {
    auto f = [](const pt::array& x, const pt::tree& p) {
        return pt::softmax(pt::linear(x, p["w"].as_array(), p["b"].as_array()));
    };
    const pt::tree p = pt::dict({{"w", rand(1, {4, 3})}, {"b", rand(2, {4})}});
    const auto r = pt::check_grad(f, std::tuple{rand(3, {5, 3}), p});
    INFO(r.to_string());
    CHECK(r);
    CHECK(r.checked == 15 + 12 + 4);
    CHECK(r.max_abs_error < 1e-8);
    CHECK_THAT(r.to_string(), Catch::StartsWith("gradient check passed: 31 elements"));
}

TEST_CASE("check_grad: a wrong backward is caught and the element named", "[check_grad]") {
    // d/dx (x^3 y) = 3 x^2 y; this backward forgets the 3.
    const auto cube_times = pt::custom_vjp(
        "cube_times",
        [](const pt::array& x, const pt::array& y) {
            return std::pair{x * x * x * y, std::pair{x, y}};
        },
        [](const std::pair<pt::array, pt::array>& xy, const pt::array& g) {
            const auto& [x, y] = xy;
            return std::vector<pt::array>{x * x * y * g, x * x * x * g};
        });
    const pt::array x = rand(4, {2, 2}, 1.0, 2.0), y = rand(5, {2, 2}, 1.0, 2.0);
    const auto r = pt::check_grad(cube_times, std::tuple{x, y});
    CHECK_FALSE(r);
    CHECK(r.checked == 8);
    CHECK_THAT(r.worst_at, Catch::StartsWith("argument 0["));
    CHECK(r.numeric == Approx(3 * r.analytic).epsilon(1e-6));
    CHECK_THAT(r.to_string(), Catch::StartsWith("gradient check failed at argument 0["));
}

TEST_CASE("check_grad: a tied tree is checked through its stored weight", "[check_grad][shared]") {
    const pt::array w = rand(6, {3, 3});
    const pt::tree tied =
        pt::share(pt::dict({{"enc", w}, {"dec", w}}), pt::parse_path("['dec']"),
                  pt::source(pt::parse_path("['enc']"), {pt::transform::transpose()}));
    auto f = [](const pt::tree& p, const pt::array& x) {
        return pt::matmul(pt::tanh(pt::matmul(x, p["enc"].as_array())), p["dec"].as_array());
    };
    const auto r = pt::check_grad(f, std::tuple{tied, rand(7, {4, 3})});
    INFO(r.to_string());
    CHECK(r);
    CHECK(r.checked == 9 + 12); // one stored weight, not two
}

TEST_CASE("check_grad: limits, integer arguments and pass-through constants", "[check_grad]") {
    auto f = [](const pt::array& table, const pt::array& idx, double scale) {
        return pt::take(table, idx) * scale;
    };
    const auto idx = pt::array::from_vector<std::int64_t>({3}, {2, 0, 2});
    pt::grad_check_options options;
    options.max_elements_per_leaf = 5;
    const auto r = pt::check_grad(f, std::tuple{rand(8, {4, 6}), idx, 2.5}, options);
    CHECK(r);
    CHECK(r.checked == 5);
}

TEST_CASE("check_grad: bad input is refused with the place named", "[check_grad][errors]") {
    auto f = [](const pt::tree& p) { return pt::sum(p["w"].as_array()); };
    const pt::tree f32 = pt::dict({{"w", pt::array::ones({2})}});
    REQUIRE_THROWS_AS(pt::check_grad(f, std::tuple{f32}), pt::leaf_error);
    REQUIRE_THROWS_WITH(pt::check_grad(f, std::tuple{f32}),
                        Catch::StartsWith("check_grad (argument 0): at ['w']: expected a float64 "
                                          "array") &&
                            Catch::EndsWith("found f32[2]"));
    auto returns_f32 = [](const pt::array& x) { return pt::sum(x).astype(pt::dtype::float32); };
    REQUIRE_THROWS_AS(pt::check_grad(returns_f32, std::tuple{rand(9, {2})}), pt::shape_error);
    pt::grad_check_options bad;
    bad.eps = 0;
    REQUIRE_THROWS_AS(pt::check_grad(returns_f32, std::tuple{rand(9, {2})}, bad), pt::value_error);
}
