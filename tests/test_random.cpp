// Tests for <paramtree/random.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/random.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

namespace pt = paramtree;
namespace rnd = paramtree::random;

TEST_CASE("random: threefry-2x32-20 matches Random123's known-answer vectors", "[random]") {
    using words = std::array<std::uint32_t, 2>;
    CHECK(rnd::threefry2x32({0, 0}, {0, 0}) == words{0x6b200159, 0x99ba4efe});
    CHECK(rnd::threefry2x32({0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
          words{0x1cb996fc, 0xbb002be7});
    CHECK(rnd::threefry2x32({0x13198a2e, 0x03707344}, {0x243f6a88, 0x85a308d3}) ==
          words{0xc4923a9c, 0x483df7a0});
}

TEST_CASE("random: same key, same numbers (pinned values)", "[random]") {
    const auto k = rnd::make_key(42);
    CHECK(k.to_string() == "key(0x00000000, 0x0000002a)");
    const auto ks = rnd::split(k, 2);
    CHECK(ks[0].words == std::array<std::uint32_t, 2>{0x62ac1a69, 0xb528cffb});
    CHECK(ks[1].words == std::array<std::uint32_t, 2>{0xa94c7b10, 0x6f258450});
    CHECK(rnd::fold_in(k, 7).words == std::array<std::uint32_t, 2>{0x35ad81d7, 0xd1266703});
    // uniform float32 values are multiples of 2^-24: exact everywhere
    const auto u = rnd::uniform(k, {3});
    CHECK(u.item(0) == 0x1.06e47p-1); // exact: a multiple of 2^-24
    CHECK(u.item(0) == Approx(0.51346159).epsilon(1e-8));
    CHECK(u.item(1) == Approx(0.385706902).epsilon(1e-8));
    CHECK(u.item(2) == Approx(0.574103773).epsilon(1e-8));
    const auto n = rnd::normal(k, {3}, pt::dtype::float64);
    CHECK(n.item(0) == Approx(0.033749721067857105).epsilon(1e-12));
    CHECK(n.item(2) == Approx(-0.16144121420610513).epsilon(1e-12));
    CHECK(rnd::permutation(k, 6).to_doubles() == std::vector<double>{3, 2, 0, 1, 5, 4});
    CHECK(pt::array_equal(rnd::uniform(k, {100}), rnd::uniform(k, {100})));
}

TEST_CASE("random: split and fold_in give distinct streams", "[random]") {
    const auto k = rnd::make_key(0);
    const auto ks = rnd::split(k, 1000);
    std::set<std::array<std::uint32_t, 2>> seen;
    for (const auto& s : ks)
        seen.insert(s.words);
    seen.insert(k.words);
    CHECK(seen.size() == 1001);
    CHECK_FALSE(rnd::fold_in(k, 1) == rnd::fold_in(k, 2));
    CHECK_FALSE(pt::array_equal(rnd::uniform(ks[0], {8}), rnd::uniform(ks[1], {8})));
    CHECK_FALSE(rnd::make_key(1) == rnd::make_key(1ULL << 32)); // both seed halves count
    const auto b = rnd::bits(k, 5);
    CHECK(b.size() == 5);
    CHECK(rnd::bits(k, 4) == std::vector<std::uint32_t>(b.begin(), b.begin() + 4)); // a prefix
}

TEST_CASE("random: distributions have the right moments and ranges", "[random]") {
    const auto k = rnd::make_key(7);
    const std::size_t n = 200000;
    auto moments = [](const pt::array& a) {
        const auto v = a.to_doubles();
        double m = 0, s = 0;
        for (const double x : v)
            m += x;
        m /= static_cast<double>(v.size());
        for (const double x : v)
            s += (x - m) * (x - m);
        return std::pair{m, std::sqrt(s / static_cast<double>(v.size()))};
    };
    const auto u = rnd::uniform(k, {n}, -2.0, 4.0);
    const auto v = u.to_doubles();
    CHECK(*std::min_element(v.begin(), v.end()) >= -2.0);
    CHECK(*std::max_element(v.begin(), v.end()) < 4.0);
    CHECK(moments(u).first == Approx(1.0).margin(0.02));
    CHECK(moments(u).second == Approx(6.0 / std::sqrt(12.0)).margin(0.01));
    const auto z = rnd::normal(k, {n}, pt::dtype::float64);
    CHECK(moments(z).first == Approx(0.0).margin(0.01));
    CHECK(moments(z).second == Approx(1.0).margin(0.01));
    const auto zf = rnd::normal(k, {n});
    const auto zv = zf.to_doubles();
    CHECK(std::all_of(zv.begin(), zv.end(), [](double x) { return std::isfinite(x); }));
    const auto t = rnd::truncated_normal(k, {n}, -1.0, 2.0);
    const auto tv = t.to_doubles();
    CHECK(*std::min_element(tv.begin(), tv.end()) >= -1.0);
    CHECK(*std::max_element(tv.begin(), tv.end()) <= 2.0);
    // Mean of N(0,1) truncated to [-1, 2]: (phi(-1) - phi(2)) / (Phi(2) - Phi(-1)).
    const auto pdf = [](double x) { return std::exp(-x * x / 2) / std::sqrt(2 * M_PI); };
    const auto cdf = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
    CHECK(moments(t).first == Approx((pdf(-1) - pdf(2)) / (cdf(2) - cdf(-1))).margin(0.01));
    const auto b = rnd::bernoulli(k, {n}, 0.3);
    CHECK(b.dtype() == pt::dtype::boolean);
    CHECK(moments(b).first == Approx(0.3).margin(0.01));
    const auto p = rnd::permutation(k, 1000).to_doubles();
    std::vector<double> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    std::vector<double> identity(sorted.size());
    std::iota(identity.begin(), identity.end(), 0.0);
    CHECK(sorted == identity);
    CHECK(p != sorted);
}

TEST_CASE("random: erfinv inverts erf", "[random]") {
    for (const double x : {-0.999999, -0.9, -0.5, -1e-9, 0.0, 0.3, 0.7, 0.99, 0.9999999})
        CHECK(std::erf(rnd::erfinv(x)) == Approx(x).epsilon(1e-12).margin(1e-15));
    CHECK(std::isinf(rnd::erfinv(1.0)));
    CHECK(std::isnan(rnd::erfinv(1.5)));
}

TEST_CASE("random: bad arguments are clear errors", "[random][error]") {
    const auto k = rnd::make_key(1);
    CHECK_THROWS_AS(rnd::uniform(k, {2}, 1.0, 1.0), pt::shape_error);
    CHECK_THROWS_WITH(rnd::uniform(k, {2}, 0, 1, pt::dtype::int32),
                      Catch::Contains("expected dtype float32 or float64, found int32"));
    CHECK_THROWS_AS(rnd::normal(k, {2}, pt::dtype::boolean), pt::shape_error);
    CHECK_THROWS_AS(rnd::truncated_normal(k, {2}, 1.0, -1.0), pt::shape_error);
    CHECK_THROWS_AS(rnd::bernoulli(k, {2}, 1.5), pt::shape_error);
    CHECK(rnd::uniform(k, {0}).size() == 0);
    CHECK(rnd::permutation(k, 0).size() == 0);
}
