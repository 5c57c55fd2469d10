// Tests for <paramtree/ravel.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ravel.hpp>

namespace pt = paramtree;

TEST_CASE("ravel: float leaves into one vector and back", "[ravel]") {
    const auto t = pt::dict({{"b", pt::array{{1.f, 2.f}, {3.f, 4.f}}},
                             {"a", pt::array{5.f}},
                             {"ids", pt::array{std::int32_t{7}}},
                             {"name", "m"}});
    auto [flat, unravel] = pt::ravel(t);
    CHECK(flat.dtype() == pt::dtype::float32);
    CHECK(flat.shape() == pt::shape_type{5});
    CHECK(flat.to_doubles() == std::vector<double>{5, 1, 2, 3, 4}); // 'a' sorts first
    CHECK(unravel.size() == 5);
    CHECK(pt::tree_equal(unravel(flat), t));
    const auto doubled = unravel(pt::array{10.0, 2.0, 4.0, 6.0, 8.0});
    CHECK(doubled["b"].as_array().dtype() == pt::dtype::float32);
    CHECK(doubled["b"].as_array().item(3) == 8.0);
    CHECK(doubled["ids"].as_array().values<std::int32_t>()[0] == 7);
}

TEST_CASE("ravel: mixed precision promotes to float64", "[ravel]") {
    const auto t = pt::list({pt::array{1.f}, pt::array{2.0}});
    auto [flat, unravel] = pt::ravel(t);
    CHECK(flat.dtype() == pt::dtype::float64);
    CHECK(unravel(flat)[0].as_array().dtype() == pt::dtype::float32);
}

TEST_CASE("ravel: wrong vector is a clear error", "[ravel][error]") {
    auto [flat, unravel] = pt::ravel(pt::list({pt::array{1.f, 2.f}}));
    CHECK_THROWS_AS(unravel(pt::array{1.f}), pt::shape_error);
    CHECK_THROWS_WITH(unravel(pt::array{1.f}),
                      Catch::Contains("expected a 1-d vector of 2 elements, found f32[1]"));
    CHECK_THROWS_AS(unravel(pt::array{std::int32_t{1}, std::int32_t{2}}), pt::leaf_error);
    CHECK_THROWS_AS(unravel(pt::array{{1.f, 2.f}}), pt::shape_error);
}
