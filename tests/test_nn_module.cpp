// Tests for <paramtree/nn/module.hpp>: contexts, module keys, Shared models, traced apply.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/shared.hpp>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

TEST_CASE("nn: contexts give every module its own key", "[nn]") {
    const auto ctx = nn::context::train(rnd::make_key(1));
    const auto a = ctx.child("layers").child(0).module_key();
    const auto b = ctx.child("layers").child(1).module_key();
    CHECK(!(a == b));
    CHECK(a == ctx.child("layers").child(0).module_key());
    CHECK(pt::keystr(ctx.child("layers").child(2).where) == ".layers[2]");
    CHECK_THROWS_AS(nn::context{}.module_key(), pt::leaf_error);
    // Two dropout layers in one Sequential drop different elements.
    const pt::tree seq = nn::sequential({nn::dropout(0.5), nn::dropout(0.5)});
    const pt::array once =
        nn::apply(nn::sequential({nn::dropout(0.5)}), pt::array::ones({64}), ctx);
    const pt::array twice = nn::apply(seq, pt::array::ones({64}), ctx);
    CHECK(!pt::array_equal(pt::array::full({64}, 4.0) * once / 2.0, twice));
}

TEST_CASE("nn: a tied model is applied through its ties, and differentiated once per tie",
          "[nn][sharing]") {
    // A weight-tied pair of layers: the second uses the first's weight.
    const auto ks = rnd::split(rnd::make_key(2), 2);
    const pt::tree untied =
        nn::sequential({nn::linear(ks[0], 3, 3, true, pt::dtype::float64), nn::activation("tanh"),
                        nn::linear(ks[1], 3, 3, true, pt::dtype::float64)});
    const pt::tree tied =
        pt::tie(untied, pt::parse_path(".layers[2].weight"), pt::parse_path(".layers[0].weight"));
    const pt::array x = gradcheck::rand(3, {2, 3});
    CHECK(pt::array_equal(nn::apply(tied, x), nn::apply(pt::expand(tied), x)));
    auto loss = [&](const pt::tree& m) { return pt::sum(nn::apply(m, x)); };
    const auto g = pt::grad(loss)(tied);
    CHECK(g.num_leaves() == 3);
    gradcheck::check_tree(loss, tied);
}

TEST_CASE("nn: a user record named like a module is never applied as one", "[nn][errors]") {
    // Flax and Inox store Linear weights as [in, out]: a square one applied as x·Wᵀ would be
    // silently transposed. Built-in modules have reserved `pt.nn.` names that pt::record
    // refuses, so a user's "Linear" is a clear error instead.
    const pt::array w{{1.f, 2.f}, {3.f, 4.f}};
    const pt::tree mine = pt::record("Linear", {{"weight", w}, {"bias", pt::array{0.f, 0.f}}},
                                     {{"in_features", 2}, {"out_features", 2}});
    try {
        (void)pt::nn::apply(mine, pt::array{{1.f, 0.f}});
        FAIL("a user record was applied as a built-in module");
    } catch (const pt::structure_error& e) {
        CHECK(std::string(e.what()).find("a record of your own") != std::string::npos);
    }
    CHECK_THROWS_AS(pt::record("pt.nn.Linear", {{"weight", w}}), pt::structure_error);
    // The built-in module is applied, and keeps its reserved name through a checkpoint-free
    // round trip of its structure.
    const pt::tree lin = pt::nn::linear(pt::random::make_key(0), 2, 2);
    CHECK(lin.record_name() == "pt.nn.Linear");
    CHECK(pt::nn::apply(lin, pt::array{{1.f, 0.f}}).shape() == pt::shape_type{1, 2});
}

TEST_CASE("nn: errors name the module once and tied reads say the fix", "[nn][errors]") {
    const pt::tree lin = pt::nn::linear(pt::random::make_key(0), 4, 2);
    try {
        (void)pt::nn::apply(lin, pt::array::ones({3, 5}));
        FAIL("no error");
    } catch (const pt::shape_error& e) {
        const std::string what = e.what();
        CHECK(what.find("nn::apply") == what.rfind("nn::apply")); // the prefix appears once
    }
    // Reading a tied position of a pruned tree: the message says how to get the value.
    const auto ks = pt::random::split(pt::random::make_key(1), 2);
    const pt::tree lm = pt::share(pt::record("LM", {{"embed", pt::nn::embedding(ks[0], 8, 4)},
                                                    {"head", pt::nn::linear(ks[1], 4, 8)}}),
                                  pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
    try {
        (void)lm["head"]["weight"].as_array();
        FAIL("no error");
    } catch (const pt::leaf_error& e) {
        CHECK(std::string(e.what()).find("pt::expand") != std::string::npos);
    }
    CHECK(pt::expand(lm)["head"]["weight"].as_array().shape() == pt::shape_type{8, 4});
}
