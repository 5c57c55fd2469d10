// Tests for <paramtree/remat.hpp>: a rematerialised function has bitwise the gradients of the
// plain one (ties, dropout, nesting, tree results included), really drops its intermediate
// values until the backward pass, and refuses a captured traced array.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/custom_vjp.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/random.hpp>
#include <paramtree/remat.hpp>
#include <paramtree/shared.hpp>

#include <memory>

namespace pt = paramtree;
namespace nn = paramtree::nn;
using gradcheck::rand;

namespace {

/// A small pre-norm Transformer (dropout 0.1) over float inputs [batch, time, dim], each
/// block applied through `apply_block`.
pt::tree transformer(std::size_t layers) {
    const auto keys = pt::random::split(pt::random::make_key(3), layers + 1);
    std::vector<pt::tree> blocks;
    for (std::size_t i = 0; i < layers; ++i)
        blocks.push_back(nn::transformer_block(keys[i], 16, 2, 32, 0.1));
    return pt::dict(
        {{"blocks", pt::list(std::move(blocks))}, {"head", nn::linear(keys[layers], 16, 4)}});
}

template <class ApplyBlock>
auto transformer_loss(ApplyBlock apply_block) {
    return [apply_block](const pt::tree& p, const pt::array& x, const pt::random::key& key) {
        const nn::context ctx = nn::context::train(key);
        pt::array h = x;
        const pt::tree blocks = p["blocks"];
        for (std::size_t i = 0; i < blocks.size(); ++i)
            h = apply_block(blocks[i], h, ctx.child("blocks").child(i));
        return pt::mean(pt::pow(nn::apply(p["head"], h), 2.0));
    };
}

const auto plain_block = [](const pt::tree& b, const pt::array& h, const nn::context& c) {
    return nn::apply(b, h, c);
};

} // namespace

TEST_CASE("remat: a Transformer's gradients are bitwise those of the plain model, dropout on",
          "[remat]") {
    const pt::tree model = transformer(3);
    const pt::array x = pt::random::normal(pt::random::make_key(4), {2, 6, 16});
    const auto key = pt::random::make_key(5);
    const auto plain = pt::value_and_grad(transformer_loss(plain_block))(model, x, key);
    const auto rematerialised =
        pt::value_and_grad(transformer_loss(pt::remat(plain_block)))(model, x, key);
    CHECK(plain.value.item() == rematerialised.value.item());
    CHECK(pt::tree_equal(plain.grad, rematerialised.grad)); // exact: no tolerance
    // Dropout is really on: another key gives another loss.
    const auto other = pt::value_and_grad(transformer_loss(pt::remat(plain_block)))(
        model, x, pt::random::make_key(6));
    CHECK(other.value.item() != plain.value.item());
}

TEST_CASE("remat: one block tied across depth (a universal Transformer) keeps bitwise gradients",
          "[remat][shared]") {
    // Four applications of one stored block: the tie sums four contributions, in the same
    // order with and without remat.
    const pt::tree block = nn::transformer_block(pt::random::make_key(7), 16, 2, 32);
    pt::tree model = pt::dict({{"blocks", pt::list({block, block, block, block})},
                               {"head", nn::linear(pt::random::make_key(8), 16, 4)}});
    for (std::size_t i = 1; i < 4; ++i)
        model = pt::share(model, pt::path{} / pt::dict_key{"blocks"} / i,
                          pt::parse_path("['blocks'][0]"));
    const pt::array x = pt::random::normal(pt::random::make_key(9), {2, 5, 16});
    const auto key = pt::random::make_key(10);
    const auto plain = pt::grad(transformer_loss(plain_block))(model, x, key);
    const auto rematerialised = pt::grad(transformer_loss(pt::remat(plain_block)))(model, x, key);
    CHECK(pt::leaves(plain).size() ==
          pt::leaves(pt::dict({{"b", block}, {"h", model["head"]}})).size());
    CHECK(pt::tree_equal(plain, rematerialised));
}

TEST_CASE("remat: the gradient matches finite differences, nested remat included", "[remat]") {
    const auto inner = pt::remat(
        [](const pt::array& a, const pt::array& b) { return pt::tanh(pt::matmul(a, b)) * a; });
    const auto outer = pt::remat([&](const pt::array& a, const pt::array& b) {
        return inner(inner(a, b), b) + pt::sigmoid(a);
    });
    gradcheck::check("nested remat",
                     [&](const std::vector<pt::array>& xs) { return outer(xs[0], xs[1]); },
                     {rand(1, {3, 3}), rand(2, {3, 3})});
    // And bitwise the plain composition.
    const auto inner_plain = [](const pt::array& a, const pt::array& b) {
        return pt::tanh(pt::matmul(a, b)) * a;
    };
    auto loss_remat = [&](const pt::array& a, const pt::array& b) { return pt::sum(outer(a, b)); };
    auto loss_plain = [&](const pt::array& a, const pt::array& b) {
        return pt::sum(inner_plain(inner_plain(a, b), b) + pt::sigmoid(a));
    };
    const pt::array a = rand(3, {3, 3}), b = rand(4, {3, 3});
    for (const std::size_t argnum : {0u, 1u})
        CHECK(pt::tree_equal(pt::grad(loss_remat, {.argnum = argnum})(a, b),
                             pt::grad(loss_plain, {.argnum = argnum})(a, b)));
}

TEST_CASE("remat: intermediate values are dropped after the forward pass and recomputed",
          "[remat]") {
    // A custom op inside f holds a residual we can watch: with remat it is gone as soon as
    // the forward pass has left f, and comes back (f runs again) during backward.
    auto watch = std::make_shared<std::weak_ptr<int>>();
    auto forward_runs = std::make_shared<int>(0);
    const auto watched = pt::custom_vjp(
        "watched",
        [watch, forward_runs](const pt::array& x) {
            auto residual = std::make_shared<int>(42);
            *watch = residual;
            ++*forward_runs;
            return std::pair{x * 3.0, residual};
        },
        [](const std::shared_ptr<int>& r, const pt::array& g) {
            REQUIRE(*r == 42);
            return g * 3.0;
        });
    const auto f = [&](const pt::array& x) { return pt::exp(watched(x)); };
    bool alive_after_forward = true;
    auto loss = [&](const auto& apply) {
        return [&, apply](const pt::array& x) {
            const pt::array y = apply(x);
            alive_after_forward = !watch->expired();
            return pt::sum(y);
        };
    };
    const pt::array x = rand(5, {4});

    const pt::tree g_plain = pt::grad(loss(f))(x);
    CHECK(alive_after_forward); // the plain call keeps f's residual on the tape
    CHECK(*forward_runs == 1);

    *forward_runs = 0;
    const pt::tree g_remat = pt::grad(loss(pt::remat(f)))(x);
    CHECK_FALSE(alive_after_forward); // remat kept only f's input and output
    CHECK(*forward_runs == 2);        // the forward pass and the recomputation
    CHECK(pt::tree_equal(g_plain, g_remat));

    *forward_runs = 0;
    CHECK(pt::remat(f)(x).to_doubles() == f(x).to_doubles()); // outside a gradient call
    CHECK(*forward_runs == 2);                                // once each: no recording
}

TEST_CASE("remat: tree results, an argument returned as is, and constant arguments", "[remat]") {
    const auto split = pt::remat([](const pt::tree& p, const pt::array& x, double scale) {
        return pt::dict({{"y", pt::tanh(x * p["w"].as_array()) * scale},
                         {"x", x},
                         {"n", pt::tree(std::int64_t{3})}});
    });
    const auto plain = [](const pt::tree& p, const pt::array& x, double scale) {
        return pt::dict({{"y", pt::tanh(x * p["w"].as_array()) * scale},
                         {"x", x},
                         {"n", pt::tree(std::int64_t{3})}});
    };
    const pt::tree p = pt::dict({{"w", rand(6, {4})}});
    const pt::array x = rand(7, {4});
    auto loss = [](const auto& fn) {
        return [fn](const pt::tree& params, const pt::array& xs) {
            const pt::tree out = fn(params, xs, 0.5);
            return pt::sum(out["y"].as_array() * out["x"].as_array()) +
                   pt::sum(out["x"].as_array());
        };
    };
    CHECK(pt::tree_equal(pt::grad(loss(split))(p, x), pt::grad(loss(plain))(p, x)));
    CHECK(pt::tree_equal(pt::grad(loss(split), {.argnum = 1})(p, x),
                         pt::grad(loss(plain), {.argnum = 1})(p, x)));
    CHECK(split(p, x, 0.5)["n"].as<std::int64_t>() == 3);
}

TEST_CASE("remat: a traced array captured instead of passed is refused", "[remat][errors]") {
    // (With no traced argument at all, f simply runs and records as usual.)
    const pt::array w = rand(8, {3});
    auto loss = [](const pt::array& v) {
        const auto f = pt::remat([v](const pt::array& x) { return x * v; });
        return pt::sum(f(v * 2.0));
    };
    REQUIRE_THROWS_AS(pt::grad(loss)(w), pt::sharing_error);
    REQUIRE_THROWS_WITH(pt::grad(loss)(w), Catch::StartsWith("remat") &&
                                               Catch::Contains("did not receive as an argument"));
}

TEST_CASE("remat: a gradient of a gradient through it names remat", "[remat]") {
    const auto square = [](const pt::array& v) { return v * v; };
    const auto x = pt::array::from_vector<double>({2}, {0.5, 2.0});
    auto inner = [&](const pt::array& v) { return pt::sum(pt::remat(square)(v)); };
    auto outer = [&](const pt::array& v) { return pt::sum(pt::grad(inner)(v).as_array()); };
    try {
        (void)pt::grad(outer)(x);
        FAIL("differentiating remat's backward again did not throw");
    } catch (const pt::value_error& e) {
        CHECK(std::string(e.what()).find("the backward of 'remat'") != std::string::npos);
    }
}
