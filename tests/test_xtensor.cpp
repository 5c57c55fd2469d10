// Tests for <paramtree/xtensor.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/xtensor.hpp>

#include <xtensor/xmath.hpp>

namespace pt = paramtree;

TEST_CASE("xtensor: zero-copy views and adoption", "[xtensor]") {
    xt::xarray<float> x{{1, 2, 3}, {4, 5, 6}};
    const float* before = x.data();
    const pt::array a = pt::from_xtensor(std::move(x));
    CHECK(reinterpret_cast<const float*>(a.bytes()) == before); // adopted, not copied
    CHECK(a.shape() == pt::shape_type{2, 3});
    const auto v = pt::as_xtensor<float>(a);
    CHECK(v(1, 2) == 6.f);
    CHECK(xt::sum(v)() == 21.f);
    CHECK(&v(0, 0) == reinterpret_cast<const float*>(a.bytes()));
    const auto copy = pt::to_xarray<double>(a);
    CHECK(copy(1, 0) == 4.0);
    const auto e = pt::from_xtensor(xt::xarray<double>{1.0, 2.0} * 2.0);
    CHECK(e.item(1) == 4.0);
    CHECK_THROWS_AS(pt::as_xtensor<double>(a), pt::leaf_error);
}
