// Tests for <paramtree/ops_nn.hpp>: indexing, matrix products, linear layers (and the fused
// linear_gelu), the softmax family, losses, normalisation and dropout — forward values, shape
// errors, and gradients against central finite differences in float64.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/autodiff.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/ops_nn.hpp>
#include <paramtree/random.hpp>

#include <cmath>
#include <limits>
#include <numeric>

namespace pt = paramtree;
using gradcheck::check;
using gradcheck::rand;
using gradcheck::vals;
using gradcheck::xs_t;

TEST_CASE("ops: concatenate, take and where", "[ops]") {
    const pt::array a{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    CHECK(vals(pt::concatenate({a, a * 10.0}, 1)) ==
          std::vector<double>{1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60});
    CHECK(pt::concatenate({a, a, a}, 0).shape() == pt::shape_type{6, 3});
    const pt::array idx = pt::array::from_vector<std::int64_t>({2, 2}, {1, 0, 1, 1});
    const pt::array e = pt::take(a, idx);
    CHECK(e.shape() == pt::shape_type{2, 2, 3});
    CHECK(vals(e) == std::vector<double>{4, 5, 6, 1, 2, 3, 4, 5, 6, 4, 5, 6});
    const pt::array mask =
        pt::array::from_vector<bool>({2, 3}, {true, false, true, false, true, false});
    CHECK(vals(pt::where(mask, a, pt::array::full({}, -1.0))) ==
          std::vector<double>{1, -1, 3, -1, 5, -1});
}

TEST_CASE("gradients: concatenate, take and where match finite differences", "[ops][grad]") {
    const pt::array a = rand(70, {2, 3, 4});
    check("concatenate",
          [](const xs_t& x) {
              return pt::concatenate({x[0], x[1], x[0], x[2]}, 1);
          },
          {a, rand(72, {2, 1, 4}), rand(73, {2, 5, 4})});
    const pt::array idx = pt::array::from_vector<std::int32_t>({2, 3}, {0, 4, 2, 4, 4, 1});
    check("take (rows used several times)", [&](const xs_t& x) { return pt::take(x[0], idx); },
          {rand(74, {5, 3})});
    const pt::array mask = pt::random::bernoulli(pt::random::make_key(5), {3, 4}, 0.5);
    check("where", [&](const xs_t& x) { return pt::where(mask, x[0], x[1]); },
          {rand(75, {3, 4}), rand(76, {4})});
}

TEST_CASE("ops: matmul agrees with a naive product, batched and broadcast", "[ops]") {
    const pt::array a = rand(3, {2, 3, 4});
    const pt::array b = rand(4, {4, 5});
    const pt::array c = pt::matmul(a, b);
    REQUIRE(c.shape() == pt::shape_type{2, 3, 5});
    const auto av = vals(a), bv = vals(b), cv = vals(c);
    for (std::size_t s = 0; s < 2; ++s)
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 5; ++j) {
                double acc = 0;
                for (std::size_t k = 0; k < 4; ++k)
                    acc += av[(s * 3 + i) * 4 + k] * bv[k * 5 + j];
                CHECK(cv[(s * 3 + i) * 5 + j] == Approx(acc).epsilon(1e-12));
            }
    // Batched with broadcasting batch axes agrees with slicing by hand.
    const pt::array x = rand(5, {3, 1, 2, 4});
    const pt::array y = rand(6, {2, 4, 3});
    const pt::array z = pt::matmul(x, y);
    REQUIRE(z.shape() == pt::shape_type{3, 2, 2, 3});
    const pt::array x1 = pt::reshape(pt::take(pt::reshape(x, {3, 8}), pt::array{1}), {2, 4});
    const pt::array y0 = pt::reshape(pt::take(pt::reshape(y, {2, 12}), pt::array{0}), {4, 3});
    const pt::array z10 = pt::reshape(pt::take(pt::reshape(z, {6, 6}), pt::array{2}), {2, 3});
    CHECK(pt::array_equal(pt::matmul(x1, y0), z10, 1e-12, 1e-12));
    // Vectors, float32.
    CHECK(pt::matmul(pt::array{1.f, 2.f}, pt::array{{1.f, 0.f}, {0.f, 1.f}}).shape() ==
          pt::shape_type{2});
    CHECK(pt::matmul(pt::array{{1.f, 2.f}}, pt::array{3.f, 4.f}).item() == 11);
}

TEST_CASE("ops: the neural-network functions compute the right values", "[ops]") {
    const pt::array x{{1.0, 2.0, 3.0}, {1000.0, 0.0, -1000.0}};
    const pt::array s = pt::softmax(x);
    CHECK(pt::sum(s, {1}).item(0) == Approx(1.0));
    CHECK(s.item(2) == Approx(std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0))));
    CHECK(s.item(3) == Approx(1.0)); // no overflow
    const pt::array ls = pt::log_softmax(x);
    CHECK(ls.item(0) == Approx(std::log(s.item(0))));
    CHECK(std::isfinite(ls.item(5)));
    // Cross-entropy is the mean of -log_softmax at the targets.
    const pt::array t = pt::array::from_vector<std::int64_t>({2}, {2, 0});
    CHECK(pt::cross_entropy(x, t).item() == Approx(-(ls.item(2) + ls.item(3)) / 2));
    // Layer norm: zero mean, unit (biased) variance per row, then the affine part.
    const pt::array h = rand(7, {4, 16}, -3, 5);
    const pt::array n = pt::layer_norm(h, 0.0);
    CHECK(std::abs(pt::mean(n, {1}).item(2)) < 1e-12);
    CHECK(pt::mean(n * n, {1}).item(3) == Approx(1.0));
    const pt::array g = rand(8, {16}), b = rand(9, {16});
    CHECK(pt::array_equal(pt::layer_norm(h, g, b, 0.0), n * g + b, 1e-12, 1e-12));
    // RMS norm: x / sqrt(mean(x^2) + eps) * gamma, as composed from the elementwise ops.
    CHECK(pt::array_equal(pt::rms_norm(h, g, 1e-6),
                          h / pt::sqrt(pt::mean(h * h, {1}, true) + 1e-6) * g, 1e-12, 1e-12));
    CHECK_THROWS_WITH(pt::rms_norm(h, pt::array::ones({15}, pt::dtype::float64)),
                      Catch::Contains("rms_norm: at <root>: expected a gain of f64[16]"));
    // gelu: exact and tanh forms (PyTorch's values).
    const pt::array v{-1.0, 0.0, 1.0, 3.0};
    CHECK(pt::gelu(v).item(2) == Approx(0.8413447460685429));
    CHECK(pt::gelu(v).item(0) == Approx(-0.15865525393145707));
    CHECK(pt::gelu(v, true).item(2) == Approx(0.8411919906082768));
    CHECK(pt::sigmoid(pt::array{-1000.0, 0.0, 1000.0}).to_doubles() ==
          std::vector<double>{0.0, 0.5, 1.0});
    CHECK(vals(pt::relu(pt::array{-1.f, 0.f, 2.f})) == std::vector<double>{0, 0, 2});
}

TEST_CASE("ops: dropout keeps the expectation and is a pure function of its key", "[ops]") {
    const auto key = pt::random::make_key(3);
    const pt::array x = pt::array::ones({100000});
    const pt::array y = pt::dropout(key, x, 0.25);
    CHECK(pt::array_equal(y, pt::dropout(key, x, 0.25)));
    CHECK(pt::mean(y).item() == Approx(1.0).epsilon(0.01));
    const auto v = vals(y);
    const auto zeros = std::count(v.begin(), v.end(), 0.0);
    CHECK(static_cast<double>(zeros) / 1e5 == Approx(0.25).epsilon(0.03));
    CHECK(std::all_of(v.begin(), v.end(), [](double e) { return e == 0 || e == Approx(4.0 / 3); }));
    CHECK(pt::same_storage(pt::dropout(key, x, 0.0), x));
}

TEST_CASE("gradients: matmul (2-d, folded batch, broadcast batch, vectors)", "[ops][grad]") {
    check("matmul 2-d", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(80, {3, 4}), rand(81, {4, 5})});
    check("matmul [..,m,k] @ [k,n]", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(82, {2, 3, 4}), rand(83, {4, 2})});
    check("matmul batched", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(84, {2, 3, 4}), rand(85, {2, 4, 2})});
    check("matmul broadcast batch", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(86, {3, 1, 2, 4}), rand(87, {2, 4, 3})});
    check("matmul 2-d @ batched", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(88, {2, 4}), rand(89, {3, 4, 2})});
    check("matmul vector @ matrix", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(90, {4}), rand(91, {4, 3})});
    check("matmul matrix @ vector", [](const xs_t& x) { return pt::matmul(x[0], x[1]); },
          {rand(92, {3, 4}), rand(93, {4})});
}

TEST_CASE("ops: linear is x @ w^T + b without copying w", "[ops]") {
    const pt::array x = rand(110, {2, 3, 4}), w = rand(111, {5, 4}), b = rand(112, {5});
    CHECK(pt::array_equal(pt::linear(x, w, b), pt::matmul(x, pt::transpose(w)) + b, 1e-12, 1e-12));
    CHECK(pt::array_equal(pt::linear(x, w), pt::matmul(x, pt::transpose(w)), 1e-12, 1e-12));
    CHECK(pt::linear(rand(113, {4}), w, b).shape() == pt::shape_type{5});
    CHECK_THROWS_AS(pt::linear(x, rand(114, {4, 5}), b), pt::shape_error);
    CHECK_THROWS_AS(pt::linear(x, w, rand(115, {4})), pt::shape_error);
}

TEST_CASE("gradients: linear matches finite differences", "[ops][grad]") {
    check("linear", [](const xs_t& x) { return pt::linear(x[0], x[1], x[2]); },
          {rand(116, {2, 3, 4}), rand(117, {5, 4}), rand(118, {5})});
    check("linear no bias", [](const xs_t& x) { return pt::linear(x[0], x[1]); },
          {rand(119, {3, 4}), rand(120, {2, 4})});
    check("linear vector", [](const xs_t& x) { return pt::linear(x[0], x[1], x[2]); },
          {rand(121, {4}), rand(122, {3, 4}), rand(123, {3})});
}

TEST_CASE("ops: linear_gelu is gelu(linear(...)) in one operation, forward and backward", "[ops]") {
    for (const bool approximate : {false, true}) {
        INFO("approximate " << approximate);
        const pt::array x = rand(130, {2, 3, 4}), w = rand(131, {5, 4}), b = rand(132, {5});
        CHECK(pt::array_equal(pt::linear_gelu(x, w, b, approximate),
                              pt::gelu(pt::linear(x, w, b), approximate), 1e-12, 1e-12));
        // float32, with rows enough to split across threads: the same values and gradients
        // as the unfused pair (the bias gradient is summed in float64 either way).
        const auto f32 = [](const pt::array& a) { return a.astype(pt::dtype::float32); };
        const pt::array xf = f32(rand(133, {64, 64, 96})), wf = f32(rand(134, {160, 96}));
        const pt::array bf = f32(rand(135, {160})), cf = f32(rand(136, {64, 64, 160}));
        const auto loss = [&](bool fused) {
            return [&, fused](const pt::tree& p) {
                const pt::array &x_ = p[0].as_array(), &w_ = p[1].as_array(), &b_ = p[2].as_array();
                const pt::array y = fused ? pt::linear_gelu(x_, w_, b_, approximate)
                                          : pt::gelu(pt::linear(x_, w_, b_), approximate);
                return pt::sum(y * cf);
            };
        };
        const pt::tree params = pt::tuple({xf, wf, bf});
        const auto [lf, gf] = pt::value_and_grad(loss(true))(params);
        const auto [lu, gu] = pt::value_and_grad(loss(false))(params);
        CHECK(lf.item() == Approx(lu.item()).epsilon(1e-5));
        for (std::size_t i = 0; i < 3; ++i) {
            INFO("gradient " << i);
            CHECK(pt::array_equal(gf[i].as_array(), gu[i].as_array(), 1e-4, 1e-4));
        }
    }
    CHECK_THROWS_AS(pt::linear_gelu(rand(137, {2, 4}), rand(138, {4, 5}), rand(139, {5})),
                    pt::shape_error);
    CHECK_THROWS_AS(pt::linear_gelu(rand(137, {2, 4}), rand(138, {5, 4}), rand(139, {4})),
                    pt::shape_error);
}

TEST_CASE("gradients: linear_gelu matches finite differences", "[ops][grad]") {
    for (const bool approximate : {false, true})
        check(
            approximate ? "linear_gelu tanh" : "linear_gelu",
            [approximate](const xs_t& x) { return pt::linear_gelu(x[0], x[1], x[2], approximate); },
            {rand(140, {2, 3, 4}), rand(141, {5, 4}), rand(142, {5})});
}

TEST_CASE("gradients: softmax family, cross-entropy, layer norm, dropout", "[ops][grad]") {
    const pt::array a = rand(100, {3, 4, 5}, -3, 3);
    for (const int axis : {-1, 0, 1}) {
        check("softmax", [&](const xs_t& x) { return pt::softmax(x[0], axis); }, {a});
        check("log_softmax", [&](const xs_t& x) { return pt::log_softmax(x[0], axis); }, {a});
    }
    const pt::array t =
        pt::array::from_vector<std::int64_t>({3, 4}, {0, 4, 2, 1, 1, 1, 3, 0, 4, 2, 2, 3});
    check("cross_entropy", [&](const xs_t& x) { return pt::cross_entropy(x[0], t); }, {a});
    check("layer_norm affine", [](const xs_t& x) { return pt::layer_norm(x[0], x[1], x[2]); },
          {a, rand(101, {5}), rand(102, {5})});
    check("layer_norm", [](const xs_t& x) { return pt::layer_norm(x[0]); }, {a});
    check("rms_norm", [](const xs_t& x) { return pt::rms_norm(x[0], x[1], 1e-3); },
          {a, rand(103, {5})});
    // Batch norm over axis 1 (4 channels of [3, 4, 5]): through the batch statistics.
    const auto zeros = pt::array::zeros({4}, pt::dtype::float64);
    const auto ones = pt::array::ones({4}, pt::dtype::float64);
    check("batch_norm training",
          [&](const xs_t& x) { return pt::batch_norm(x[0], x[1], x[2], zeros, ones, true).y; },
          {a, rand(104, {4}), rand(105, {4})});
    check(
        "batch_norm inference",
        [&](const xs_t& x) { return pt::batch_norm(x[0], x[1], x[2], x[3], ones + 1.0, false).y; },
        {a, rand(106, {4}), rand(107, {4}), rand(108, {4})});
    const auto key = pt::random::make_key(8);
    check("dropout", [&](const xs_t& x) { return pt::dropout(key, x[0], 0.3); }, {a});
}
