// Tests for <paramtree/custom_vjp.hpp>: operations with a user backward record on the tape
// like built-in ones (one and several outputs, residuals, integer inputs), keep ties, pass
// gradient checks, and name themselves in every error.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/check_grad.hpp>
#include <paramtree/custom_vjp.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/xtensor.hpp>

#include <cmath>
#include <memory>

#include <xtensor/xmath.hpp>

namespace pt = paramtree;
using gradcheck::rand;

namespace {

/// log(1 + exp(x)) without overflow; its derivative is sigmoid(x).
const auto softplus = pt::custom_vjp(
    "softplus",
    [](const pt::array& x) {
        const pt::array abs = pt::relu(x) + pt::relu(-x);
        return std::pair{pt::relu(x) + pt::log(1.0 + pt::exp(-abs)), x};
    },
    [](const pt::array& x, const pt::array& g) { return g * pt::sigmoid(x); });

/// Rounds to the nearest integer; the gradient passes straight through (a straight-through
/// estimator, as in quantisation-aware training).
const auto round_ste = pt::custom_vjp(
    "round_ste",
    [](const pt::array& x) {
        return x.dtype() == pt::dtype::float64
                   ? pt::from_xtensor(xt::round(pt::as_xtensor<double>(x)))
                   : pt::from_xtensor(xt::round(pt::as_xtensor<float>(x)));
    },
    [](const pt::array& g) { return g; });

std::vector<double> values(const pt::tree& t) {
    return t.as_array().to_doubles();
}

} // namespace

TEST_CASE("custom_vjp: a stable softplus has the values and gradient of log(1 + exp(x))",
          "[custom_vjp]") {
    const pt::array x = rand(1, {3, 5}, -4, 4);
    const pt::array y = softplus(x);
    const auto xs = x.to_doubles();
    const auto ys = y.to_doubles();
    for (std::size_t i = 0; i < xs.size(); ++i)
        CHECK(ys[i] == Approx(std::log1p(std::exp(xs[i]))).epsilon(1e-12));
    // Where the naive formula overflows, the custom op does not.
    const auto big = pt::array::from_vector<double>({2}, {800.0, -800.0});
    CHECK(softplus(big).to_doubles() == std::vector<double>{800.0, 0.0});

    const pt::tree g = pt::grad([](const pt::array& v) { return pt::sum(softplus(v)); })(x);
    const auto s = pt::sigmoid(x).to_doubles();
    const auto gs = values(g);
    for (std::size_t i = 0; i < xs.size(); ++i)
        CHECK(gs[i] == Approx(s[i]).epsilon(1e-14));
    const auto check = pt::check_grad(softplus, std::tuple{x});
    INFO(check.to_string());
    CHECK(check);
    CHECK(check.checked == 15);
}

TEST_CASE("custom_vjp: a straight-through estimator rounds forward and passes the gradient",
          "[custom_vjp]") {
    const auto x = pt::array::from_vector<float>({4}, {0.2f, 0.7f, -1.4f, 2.5f});
    CHECK(round_ste(x).to_doubles() == std::vector<double>{0, 1, -1, 3});
    auto loss = [](const pt::array& v) { return pt::sum(round_ste(v) * v); };
    // d/dv sum(round(v) * v) with round's derivative taken as 1: round(v) + v.
    const auto g = values(pt::grad(loss)(x));
    const auto expected = std::vector<double>{0 + 0.2, 1 + 0.7, -1 - 1.4, 3 + 2.5};
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(g[i] == Approx(expected[i]).epsilon(1e-6));
}

TEST_CASE("custom_vjp: outside a gradient call the op is its forward; backward never runs",
          "[custom_vjp]") {
    auto calls = std::make_shared<int>(0);
    const auto op = pt::custom_vjp(
        "counted", [](const pt::array& x) { return x * 2.0; },
        [calls](const pt::array& g) {
            ++*calls;
            return g * 2.0;
        });
    CHECK(op(pt::array::ones({3})).to_doubles() == std::vector<double>{2, 2, 2});
    CHECK(*calls == 0);
    const auto g =
        pt::grad([&](const pt::array& x) { return pt::sum(op(x) * op(x)); })(pt::array::ones({3}));
    CHECK(*calls == 2); // once per use, in the one backward pass
    CHECK(values(g) == std::vector<double>{8, 8, 8});
}

TEST_CASE("custom_vjp: several inputs, residuals, and an integer input that gets no gradient",
          "[custom_vjp]") {
    // rows of `table` picked by `idx`, scaled by `s`: table [V, D], idx int64 [N], s [N, D].
    const auto scaled_lookup = pt::custom_vjp(
        "scaled_lookup",
        [](const pt::array& table, const pt::array& idx, const pt::array& s) {
            const pt::array rows = pt::take(table, idx);
            return std::pair{rows * s, std::tuple{rows, idx, s, table.shape()}};
        },
        [](const auto& res, const pt::array& g) {
            const auto& [rows, idx, s, table_shape] = res;
            // The scatter-add of take's backward, written with take's own gradient.
            const pt::array dtable = pt::grad([&idx = idx, &g, &s = s](const pt::array& t) {
                                         return pt::sum(pt::take(t, idx) * g * s);
                                     })(pt::array::zeros(table_shape, g.dtype()))
                                         .as_array();
            return std::vector<std::optional<pt::array>>{dtable, std::nullopt, g * rows};
        });
    const pt::array table = rand(2, {5, 3});
    const auto idx = pt::array::from_vector<std::int64_t>({4}, {4, 0, 4, 2});
    const pt::array s = rand(3, {4, 3});
    const auto check = pt::check_grad(scaled_lookup, std::tuple{table, idx, s});
    INFO(check.to_string());
    CHECK(check);
    CHECK(check.checked == 15 + 12); // the integer indices are not checked
    // The same as the built-in ops.
    auto mine = [&](const pt::tree& p) {
        return pt::sum(pt::pow(scaled_lookup(p["t"].as_array(), idx, p["s"].as_array()), 2.0));
    };
    auto builtin = [&](const pt::tree& p) {
        return pt::sum(pt::pow(pt::take(p["t"].as_array(), idx) * p["s"].as_array(), 2.0));
    };
    const pt::tree p = pt::dict({{"t", table}, {"s", s}});
    CHECK(pt::tree_equal(pt::grad(mine)(p), pt::grad(builtin)(p), {1e-12, 1e-12}));
}

TEST_CASE("custom_vjp: several outputs get their cotangents together; an unused one is zero",
          "[custom_vjp]") {
    auto seen = std::make_shared<std::vector<std::vector<double>>>();
    const auto sum_and_product = pt::custom_vjp(
        "sum_and_product",
        [](const pt::array& a, const pt::array& b) {
            return std::pair{std::vector<pt::array>{a + b, a * b}, std::pair{a, b}};
        },
        [seen](const std::pair<pt::array, pt::array>& ab, const std::vector<pt::array>& g) {
            for (const pt::array& gi : g)
                seen->push_back(gi.to_doubles());
            return std::vector<pt::array>{g[0] + g[1] * ab.second, g[0] + g[1] * ab.first};
        });
    const pt::array a = rand(4, {2, 3}), b = rand(5, {2, 3});
    auto both = [&](const std::vector<pt::array>& xs) {
        const auto out = sum_and_product(xs[0], xs[1]);
        return out[0] * 3.0 + pt::exp(out[1]);
    };
    gradcheck::check("sum_and_product", both, {a, b});

    seen->clear();
    auto only_product = [&](const pt::array& x) { return pt::sum(sum_and_product(x, b)[1]); };
    const auto g = values(pt::grad(only_product)(a));
    REQUIRE(seen->size() == 2);
    CHECK(seen->at(0) == std::vector<double>(6, 0.0)); // the sum was not used
    CHECK(seen->at(1) == std::vector<double>(6, 1.0));
    CHECK(g == b.to_doubles());
    // Outside a gradient call the outputs are plain.
    CHECK(sum_and_product(a, b)[0].to_doubles() == (a + b).to_doubles());
}

TEST_CASE("custom_vjp: a tied weight used through the op gets one summed gradient",
          "[custom_vjp][shared]") {
    const pt::array w = rand(6, {3, 3});
    const pt::tree tied =
        pt::share(pt::dict({{"a", w}, {"b", w}}), pt::parse_path("['b']"), pt::parse_path("['a']"));
    const pt::tree untied = pt::dict({{"a", w}, {"b", w}});
    const pt::array x = rand(7, {2, 3});
    auto loss = [&](const pt::tree& p) {
        const pt::array h = softplus(pt::matmul(x, p["a"].as_array()));
        return pt::sum(softplus(pt::matmul(h, p["b"].as_array())));
    };
    const pt::tree g_tied = pt::grad(loss)(tied);
    const pt::tree g_untied = pt::grad(loss)(untied);
    CHECK(pt::leaves(g_tied).size() == 1);
    const pt::array sum = g_untied["a"].as_array() + g_untied["b"].as_array();
    CHECK(pt::tree_equal(g_tied["a"], pt::tree(sum), {1e-12, 1e-14}));
    const auto check = pt::check_grad(loss, std::tuple{tied});
    INFO(check.to_string());
    CHECK(check);
    CHECK(check.checked == 9);
}

TEST_CASE("custom_vjp: errors name the op, the phase, and the input", "[custom_vjp][errors]") {
    const pt::array x = rand(8, {2, 3}), y = rand(9, {3});
    auto through = [](const auto& op) {
        return [op](const pt::array& a, const pt::array& b) { return pt::sum(op(a, b)); };
    };

    SECTION("a cotangent of the wrong shape") {
        const auto op = pt::custom_vjp(
            "bad_shape", [](const pt::array& a, const pt::array& b) { return a * b; },
            [](const pt::array& g) {
                return std::vector<pt::array>{g, g};
            });
        REQUIRE_THROWS_MATCHES(
            pt::grad(through(op), {.argnum = 1})(x, y), pt::shape_error,
            Catch::Message("custom op 'bad_shape' backward, cotangent of input 1: at <root>: "
                           "expected f64[3] "
                           "(the input's shape and dtype), found f64[2,3]"));
    }
    SECTION("the wrong number of cotangents") {
        const auto op = pt::custom_vjp(
            "bad_count", [](const pt::array& a, const pt::array& b) { return a * b; },
            [](const pt::array& g) { return g; });
        REQUIRE_THROWS_MATCHES(
            pt::grad(through(op))(x, y), pt::shape_error,
            Catch::Message("custom op 'bad_count' backward: at <root>: expected 2 "
                           "cotangents (one per input), found 1"));
    }
    SECTION("a paramtree error inside forward or backward") {
        const auto fwd = pt::custom_vjp(
            "mm", [](const pt::array& a, const pt::array& b) { return pt::matmul(b, a); },
            [](const pt::array& g) {
                return std::vector<pt::array>{g, g};
            });
        REQUIRE_THROWS_WITH(fwd(x, y), Catch::Contains("(in custom op 'mm' forward)"));
        const auto bwd = pt::custom_vjp(
            "mm2", [](const pt::array& a, const pt::array&) { return a * 2.0; },
            [](const pt::array& g) {
                return std::vector<pt::array>{pt::matmul(g, g), g};
            });
        REQUIRE_THROWS_AS(pt::grad(through(bwd))(x, y), pt::shape_error);
        REQUIRE_THROWS_WITH(pt::grad(through(bwd))(x, y),
                            Catch::Contains("(in custom op 'mm2' backward)"));
    }
    SECTION("a traced array captured by forward instead of passed as an input") {
        auto loss = [](const pt::array& w) {
            const auto op = pt::custom_vjp(
                "captures", [w](const pt::array& a) { return a * w; },
                [](const pt::array& g) { return g; });
            return pt::sum(op(pt::array::ones({3}, pt::dtype::float64)));
        };
        REQUIRE_THROWS_AS(pt::grad(loss)(y), pt::sharing_error);
        REQUIRE_THROWS_WITH(pt::grad(loss)(y), Catch::StartsWith("custom op 'captures' forward") &&
                                                   Catch::Contains("did not receive as an input"));
    }
    SECTION("inputs from two gradient calls") {
        const pt::array outer_value = rand(10, {3});
        pt::array escaped;
        (void)pt::grad([&](const pt::array& v) {
            escaped = v;
            return pt::sum(v);
        })(outer_value);
        REQUIRE_THROWS_AS(softplus(escaped), pt::sharing_error);
    }
}

TEST_CASE("custom_vjp: a gradient of a gradient through it names the operation", "[custom_vjp]") {
    const auto cube = pt::custom_vjp(
        "cube",
        [](const pt::array& x) {
            return std::pair{x * x * x, x};
        },
        [](const pt::array& x, const pt::array& g) { return x * x * g * 3.0; });
    const auto x = pt::array::from_vector<double>({2}, {0.5, 2.0});
    auto inner = [&](const pt::array& v) { return pt::sum(cube(v)); };
    auto outer = [&](const pt::array& v) { return pt::sum(pt::grad(inner)(v).as_array()); };
    try {
        (void)pt::grad(outer)(x);
        FAIL("differentiating a first-order rule again did not throw");
    } catch (const pt::value_error& e) {
        CHECK(std::string(e.what()).find("the backward of 'cube'") != std::string::npos);
    }
}
