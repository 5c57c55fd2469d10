// Tests for <paramtree/ops.hpp>: forward values, shape errors, and every operation's gradient
// against central finite differences in float64 (the operations of <paramtree/ops_nn.hpp>:
// test_ops_nn.cpp).
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/random.hpp>

#include <cmath>
#include <limits>
#include <numeric>

namespace pt = paramtree;
using gradcheck::check;
using gradcheck::rand;
using gradcheck::vals;
using gradcheck::xs_t;

TEST_CASE("ops: arithmetic broadcasts like numpy", "[ops]") {
    const pt::array a{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    const pt::array row{10.f, 20.f, 30.f};
    const pt::array col{{1.f}, {2.f}};
    CHECK(vals(a + row) == std::vector<double>{11, 22, 33, 14, 25, 36});
    CHECK(vals(a * col) == std::vector<double>{1, 2, 3, 8, 10, 12});
    CHECK(vals(a - 1.0) == std::vector<double>{0, 1, 2, 3, 4, 5});
    CHECK(vals(2.0 * a / 2.0) == vals(a));
    CHECK(vals(1.0 - a) == std::vector<double>{0, -1, -2, -3, -4, -5});
    CHECK(vals(-a)[5] == -6);
    CHECK((a + row).shape() == pt::shape_type{2, 3});
    CHECK((col + row).shape() == pt::shape_type{2, 3}); // [2,1] + [3] -> [2,3]
    CHECK(vals(pt::pow(pt::array{2.f, 3.f}, 2.0)) == std::vector<double>{4, 9});
    CHECK(vals(pt::array{1, 2} + pt::array{3, 4}) == std::vector<double>{4, 6}); // int32
}

TEST_CASE("ops: incompatible shapes and dtypes are shape_errors naming both operands",
          "[ops][errors]") {
    const pt::array a = pt::array::zeros({3, 4});
    const pt::array b = pt::array::zeros({5});
    try {
        (void)(a * b);
        FAIL("expected shape_error");
    } catch (const pt::shape_error& e) {
        CHECK(std::string(e.what()).find("f32[3,4] and f32[5]") != std::string::npos);
        CHECK(e.context() == "multiply");
    }
    CHECK_THROWS_AS(a + pt::array::zeros({4}, pt::dtype::float64), pt::shape_error);
    CHECK_THROWS_AS(pt::exp(pt::array{1, 2}), pt::shape_error); // int
    CHECK_THROWS_AS(pt::matmul(pt::array::zeros({2, 3}), pt::array::zeros({4, 2})),
                    pt::shape_error);
    CHECK_THROWS_AS(pt::sum(a, {2}), pt::shape_error);
    CHECK_THROWS_AS(pt::sum(a, {1, -1}), pt::shape_error); // repeated axis
    CHECK_THROWS_AS(pt::transpose(a, {0, 0}), pt::shape_error);
    CHECK_THROWS_AS(pt::concatenate({a, pt::array::zeros({2, 5})}, 0), pt::shape_error);
    CHECK_THROWS_AS(pt::take(a, pt::array{0, 3}), pt::shape_error); // row 3 of 3
    CHECK_THROWS_AS(pt::take(a, pt::array{0.f}), pt::shape_error);  // float indices
    CHECK_THROWS_AS(pt::where(a, a, a), pt::shape_error);           // mask not bool
    CHECK_THROWS_AS(pt::cross_entropy(a, pt::array{0, 4, 1}), pt::shape_error);
    CHECK_THROWS_AS(pt::cross_entropy(a, pt::array{0, 1}), pt::shape_error); // target 4 >= C
    CHECK_THROWS_AS(pt::layer_norm(a, pt::array::ones({3}), pt::array::zeros({4})),
                    pt::shape_error);
    CHECK_THROWS_AS(pt::dropout(pt::random::make_key(0), a, 1.0), pt::shape_error);
    CHECK_THROWS_AS(a.reshape({5}), pt::shape_error);
}

TEST_CASE("ops: reductions over axes, keepdims, negative axes", "[ops]") {
    const pt::array a{{1.f, 5.f, 3.f}, {4.f, 2.f, 6.f}};
    CHECK(pt::sum(a).item() == 21);
    CHECK(pt::sum(a).shape().empty());
    // Integer sums are exact beyond 2^53.
    const pt::array big =
        pt::array::from_vector<std::int64_t>({2}, {(std::int64_t{1} << 60) + 1, 2});
    const pt::array big_sum = pt::sum(big);
    CHECK(big_sum.values<std::int64_t>()[0] == (std::int64_t{1} << 60) + 3);
    CHECK(vals(pt::sum(a, {0})) == std::vector<double>{5, 7, 9});
    CHECK(vals(pt::sum(a, {-1}, true)) == std::vector<double>{9, 12});
    CHECK(pt::sum(a, {-1}, true).shape() == pt::shape_type{2, 1});
    CHECK(vals(pt::mean(a, {1})) == std::vector<double>{3, 4});
    CHECK(vals(pt::max(a, {1})) == std::vector<double>{5, 6});
    CHECK(vals(pt::max(a, {0})) == std::vector<double>{4, 5, 6});
    const pt::array c = rand(1, {2, 3, 4, 5});
    // Non-contiguous axes agree with reducing one at a time.
    CHECK(pt::array_equal(pt::sum(c, {0, 2}), pt::sum(pt::sum(c, {2}), {0}), 1e-12, 1e-12));
    CHECK(pt::array_equal(pt::max(c, {1, 3}), pt::max(pt::max(c, {3}), {1})));
}

TEST_CASE("ops: shape operations", "[ops]") {
    const pt::array a{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    CHECK(vals(pt::transpose(a)) == std::vector<double>{1, 4, 2, 5, 3, 6});
    const pt::array b = rand(2, {2, 3, 4});
    CHECK(pt::swapaxes(b, -1, -2).shape() == pt::shape_type{2, 4, 3});
    CHECK(pt::swapaxes(b, -1, -2).item(1) == b.item(4));
    CHECK(pt::transpose(b, {2, 0, 1}).shape() == pt::shape_type{4, 2, 3});
    // The tiled batch transpose agrees with the general permutation, on sizes that are not
    // multiples of the tile.
    const pt::array big = rand(3, {3, 37, 70});
    const pt::array swapped = pt::swapaxes(big, 1, 2);
    const auto bv = vals(big), sv = vals(swapped);
    bool same = true;
    for (std::size_t q = 0; q < 3; ++q)
        for (std::size_t i = 0; i < 37; ++i)
            for (std::size_t j = 0; j < 70; ++j)
                same = same && sv[(q * 70 + j) * 37 + i] == bv[(q * 37 + i) * 70 + j];
    CHECK(same);
    const pt::array r = pt::reshape(a, {3, 2});
    CHECK(pt::same_storage(r, a)); // zero-copy
    CHECK(vals(pt::broadcast_to(pt::array{1.f, 2.f}, {2, 2})) == std::vector<double>{1, 2, 1, 2});
}

TEST_CASE("ops: float32 exp is within 2 ulp of the C library's, with 0 and inf at the ends",
          "[ops]") {
    std::vector<float> xs;
    for (int i = -10300; i <= 8870; ++i)
        xs.push_back(static_cast<float>(i) / 100.0f + 0.00123f);
    const pt::array x = pt::array::from_vector<float>({xs.size()}, xs);
    const pt::array y = pt::exp(x);
    const auto yv = y.values<float>();
    double worst = 0, worst_denormal = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double ref = std::exp(static_cast<double>(xs[i]));
        if (ref < 1.2e-38) { // denormal results: within one denormal step
            worst_denormal = std::max(worst_denormal, std::abs(yv[i] - ref));
            continue;
        }
        worst = std::max(worst, std::abs(yv[i] - ref) / ref);
    }
    CHECK(worst < 2.5e-7);
    CHECK(worst_denormal <= 1.5e-45);
    CHECK(pt::exp(pt::array{-1000.f, 0.f, 1000.f}).to_doubles() ==
          std::vector<double>{0.0, 1.0, std::numeric_limits<double>::infinity()});
    // NaN stays NaN (and is no undefined conversion on the way: the sanitizer build checks).
    const float nan = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(pt::exp(pt::array{nan, 1.f}).item(0)));
    CHECK(pt::exp(pt::array{nan, 1.f}).item(1) == Approx(std::exp(1.0)));
    CHECK(std::isnan(pt::tanh(pt::array{nan}).item(0)));
    // Softmax of masked scores: exactly 0, no NaN.
    const pt::array s = pt::softmax(pt::array{{0.f, -1e9f, 2.f}});
    CHECK(s.item(1) == 0.0);
    CHECK(s.item(0) + s.item(2) == Approx(1.0));
}

TEST_CASE("ops: float32 tanh and sigmoid stay within a few ulp of the C library's", "[ops]") {
    std::vector<float> xs;
    for (int i = -2000; i <= 2000; ++i)
        xs.push_back(static_cast<float>(i) / 100.0f + 0.00037f);
    // Densely through the rational form's clamp (7.9988) and its switch to ±1 (9), and the
    // switch to tanh x = x near 0.
    for (int i = 0; i <= 12000; ++i)
        xs.push_back(7.5f + static_cast<float>(i) * 1.5e-4f);
    for (int i = 1; i <= 400; ++i) {
        xs.push_back(static_cast<float>(i) * 2.5e-6f);
        xs.push_back(static_cast<float>(i) * -2.5e-6f);
    }
    xs.push_back(1e-6f);
    xs.push_back(-3e-8f);
    const pt::array x = pt::array::from_vector<float>({xs.size()}, xs);
    const pt::array t = pt::tanh(x), s = pt::sigmoid(x);
    double worst_t = 0, worst_s = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double v = xs[i];
        worst_t = std::max(worst_t, std::abs(t.item(i) - std::tanh(v)) / std::abs(std::tanh(v)));
        const double sg = 1 / (1 + std::exp(-v));
        worst_s = std::max(worst_s, std::abs(s.item(i) - sg) / sg);
    }
    CHECK(worst_t < 3e-7);
    CHECK(worst_s < 4e-7);
    const float inf = std::numeric_limits<float>::infinity();
    CHECK(pt::tanh(pt::array{-inf, -100.f, -9.f, 9.f, 100.f, inf}).to_doubles() ==
          std::vector<double>{-1, -1, -1, 1, 1, 1});
    CHECK(pt::tanh(pt::array{-0.f, 3e-4f}).to_doubles() == std::vector<double>{-0.f, 3e-4f});
    CHECK(std::signbit(pt::tanh(pt::array{-0.f}).item(0)));
}

TEST_CASE("gradients: elementwise arithmetic, with broadcasting, match finite differences",
          "[ops][grad]") {
    // Shape pairs: equal, row and column broadcasting, scalar, both sides broadcasting.
    const std::vector<std::pair<pt::shape_type, pt::shape_type>> pairs = {
        {{3, 4}, {3, 4}}, {{3, 4}, {4}},       {{3, 1}, {1, 4}},
        {{}, {2, 3}},     {{2, 1, 4}, {3, 1}}, {{5}, {1}}};
    std::uint32_t seed = 10;
    for (const auto& [sa, sb] : pairs) {
        const pt::array a = rand(seed++, sa), b = rand(seed++, sb);
        const pt::array bpos = rand(seed++, sb, 0.5, 2.0), apos = rand(seed++, sa, 0.5, 2.0);
        check("add", [](const xs_t& x) { return x[0] + x[1]; }, {a, b});
        check("subtract", [](const xs_t& x) { return x[0] - x[1]; }, {a, b});
        check("multiply", [](const xs_t& x) { return x[0] * x[1]; }, {a, b});
        check("divide", [](const xs_t& x) { return x[0] / x[1]; }, {a, bpos});
        check("pow", [](const xs_t& x) { return pt::pow(x[0], x[1]); }, {apos, b});
    }
    // Random shapes: a random rank-0..3 shape against a random broadcastable version of it.
    auto key = pt::random::make_key(77);
    for (int trial = 0; trial < 12; ++trial) {
        const auto bits =
            pt::random::bits(pt::random::fold_in(key, static_cast<std::uint32_t>(trial)), 8);
        const std::size_t rank = bits[0] % 4;
        pt::shape_type sa, sb;
        for (std::size_t d = 0; d < rank; ++d) {
            sa.push_back(1 + bits[1 + d] % 3);
            sb.push_back(bits[4 + d] % 2 ? sa.back() : 1);
        }
        if (rank > 0 && bits[7] % 2) sb.erase(sb.begin()); // fewer leading axes
        const pt::array a = rand(seed++, sa), b = rand(seed++, sb);
        check("multiply (random shapes)", [](const xs_t& x) { return x[0] * x[1] - x[1]; }, {a, b});
        check("add (random shapes)", [](const xs_t& x) { return x[1] + x[0]; }, {a, b});
    }
    const pt::array a = rand(40, {3, 4});
    check("scalar ops", [](const xs_t& x) { return (x[0] * 3.0 + 1.0) / 2.0 - 0.5; }, {a});
    check("scalar left ops", [](const xs_t& x) { return 2.0 - 3.0 * x[0]; }, {a});
    check("scalar divided by", [](const xs_t& x) { return 1.0 / x[0]; }, {rand(41, {3}, 0.5, 2)});
    check("negative", [](const xs_t& x) { return -x[0]; }, {a});
    check("pow scalar", [](const xs_t& x) { return pt::pow(x[0], 3.0); }, {a});
}

TEST_CASE("gradients: elementwise functions match finite differences", "[ops][grad]") {
    const pt::array a = rand(50, {4, 5});
    const pt::array pos = rand(51, {4, 5}, 0.3, 3.0);
    check("exp", [](const xs_t& x) { return pt::exp(x[0]); }, {a});
    check("log", [](const xs_t& x) { return pt::log(x[0]); }, {pos});
    check("sqrt", [](const xs_t& x) { return pt::sqrt(x[0]); }, {pos});
    check("tanh", [](const xs_t& x) { return pt::tanh(x[0]); }, {a});
    check("sigmoid", [](const xs_t& x) { return pt::sigmoid(x[0]); }, {a * 4.0});
    check("relu", [](const xs_t& x) { return pt::relu(x[0]); }, {a});
    check("gelu", [](const xs_t& x) { return pt::gelu(x[0]); }, {a * 2.0});
    check("gelu tanh", [](const xs_t& x) { return pt::gelu(x[0], true); }, {a * 2.0});
}

TEST_CASE("gradients: astype carries the gradient between float dtypes; stop_gradient cuts it",
          "[ops][grad]") {
    const pt::array x{0.5, 0.25};
    const pt::array c{3.0, -2.0};
    auto through_f32 = [&](const pt::array& v) {
        return pt::sum(v.astype(pt::dtype::float32).astype(pt::dtype::float64) * c);
    };
    CHECK(pt::grad(through_f32)(x).as_array().to_doubles() == c.to_doubles());
    // To an integer dtype there is no gradient (as in JAX).
    auto through_int = [&](const pt::array& v) {
        return pt::sum(v.astype(pt::dtype::int64).astype(pt::dtype::float64) * c + v);
    };
    CHECK(pt::grad(through_int)(x).as_array().to_doubles() == std::vector<double>{1, 1});
    // d/dx [x * const(x)] = const(x) = x, not 2x.
    auto cut = [](const pt::array& v) { return pt::sum(v * pt::stop_gradient(v)); };
    CHECK(pt::grad(cut)(x).as_array().to_doubles() == x.to_doubles());
}

TEST_CASE("gradients: reductions match finite differences", "[ops][grad]") {
    const pt::array a = rand(60, {3, 4, 5});
    for (const auto& axes : std::vector<std::vector<int>>{{}, {0}, {1}, {-1}, {0, 2}, {1, 2}}) {
        for (const bool keep : {false, true}) {
            check("sum", [&](const xs_t& x) { return pt::sum(x[0], axes, keep); }, {a});
            check("mean", [&](const xs_t& x) { return pt::mean(x[0], axes, keep); }, {a});
            check("max", [&](const xs_t& x) { return pt::max(x[0], axes, keep); }, {a});
        }
    }
}

TEST_CASE("gradients: max shares the gradient equally among ties", "[ops][grad]") {
    const pt::array x{3.0, 1.0, 3.0};
    auto [v, g] = pt::value_and_grad([](const pt::array& a) { return pt::max(a); })(x);
    CHECK(v.item() == 3);
    CHECK(g.as_array().to_doubles() == std::vector<double>{0.5, 0, 0.5});
}

TEST_CASE("gradients: shape operations match finite differences", "[ops][grad]") {
    const pt::array a = rand(70, {2, 3, 4});
    check("reshape", [](const xs_t& x) { return pt::reshape(x[0], {4, 6}); }, {a});
    check("member reshape", [](const xs_t& x) { return x[0].reshape({6, 4}) * 2.0; }, {a});
    check("transpose", [](const xs_t& x) { return pt::transpose(x[0]); }, {a});
    check("transpose axes", [](const xs_t& x) { return pt::transpose(x[0], {1, -1, 0}); }, {a});
    check("swapaxes", [](const xs_t& x) { return pt::swapaxes(x[0], 0, 2); }, {a});
    check("broadcast_to",
          [](const xs_t& x) {
              return pt::broadcast_to(x[0], {5, 3, 4});
          },
          {rand(71, {3, 1})});
}

TEST_CASE("gradients: float32 operations produce float32 gradients", "[ops][grad]") {
    const pt::array w = pt::array::ones({3, 2});
    auto g = pt::grad([](const pt::array& x) {
        return pt::sum(pt::tanh(pt::matmul(x, x.reshape({2, 3}))));
    })(w);
    CHECK(g.as_array().dtype() == pt::dtype::float32);
    CHECK(g.as_array().shape() == pt::shape_type{3, 2});
}
