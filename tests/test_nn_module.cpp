// Tests for <paramtree/nn/module.hpp>: contexts, module keys, Shared models, traced apply.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/error.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/shared.hpp>

#include <cmath>
#include <filesystem>

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
    CHECK(lm["head"]["weight"].as_array().shape() == pt::shape_type{8, 4}); // the tie's value
    try {
        (void)lm.child(0)["head"]["weight"].as_array(); // storage: the placeholder
        FAIL("no error");
    } catch (const pt::leaf_error& e) {
        CHECK(std::string(e.what()).find("pt::expand") != std::string::npos);
    }
    CHECK(pt::expand(lm)["head"]["weight"].as_array().shape() == pt::shape_type{8, 4});
}

TEST_CASE("nn state: BatchNorm's running statistics update functionally, as PyTorch's do",
          "[nn][state]") {
    const pt::tree net = nn::sequential({nn::linear(rnd::make_key(2), 3, 4), nn::batch_norm(4)});
    const pt::array x = rnd::normal(rnd::make_key(3), {16, 3});
    const auto train = nn::context::train(rnd::make_key(4));
    // Plain apply reads the state and leaves it; apply_with_state returns it updated.
    const pt::array y = nn::apply(net, x, train);
    const auto [y2, updated] = nn::apply_with_state(net, x, train);
    CHECK(pt::array_equal(y, y2));
    const pt::tree before = net["layers"][1]["state"], after = updated["layers"][1]["state"];
    CHECK(after["num_batches_tracked"].as_array().item() == 1);
    const pt::array h = nn::apply(net["layers"][0], x);
    const auto mu = pt::mean(h, {0}), var = pt::mean(pt::pow(h - mu, 2.0), {0}) * (16.0 / 15.0);
    CHECK(pt::array_equal(after["running_mean"].as_array(), mu * 0.1, 1e-6, 1e-6));
    CHECK(pt::array_equal(after["running_var"].as_array(), var * 0.1 + 0.9, 1e-5, 1e-5));
    // The parameters are the same arrays (not copies); only the State record is new.
    CHECK(pt::same_storage(updated["layers"][0]["weight"].as_array(),
                           net["layers"][0]["weight"].as_array()));
    CHECK(pt::same_storage(updated["layers"][1]["weight"].as_array(),
                           net["layers"][1]["weight"].as_array()));
    CHECK_FALSE(
        pt::same_storage(after["running_mean"].as_array(), before["running_mean"].as_array()));
    // Batch statistics normalise in training: per channel mean 0, variance 1.
    CHECK(std::abs(pt::mean(y, {0}).item(2)) < 1e-5);
    // Inference uses the running statistics and updates nothing.
    const auto [z, same] = nn::apply_with_state(updated, x);
    CHECK(pt::same_node(same, updated));
    CHECK(pt::array_equal(z,
                          (h - after["running_mean"].as_array()) /
                              pt::sqrt(after["running_var"].as_array() + 1e-5),
                          1e-5, 1e-5));
}

TEST_CASE("nn state: gradients skip the state; a training step carries it; a tie keeps one",
          "[nn][state][shared]") {
    const pt::tree block = nn::sequential({nn::linear(rnd::make_key(5), 3, 3), nn::batch_norm(3)});
    // One block applied twice (a Siamese pair): one stored block, so one state.
    const pt::tree model = pt::share(pt::record("Pair", {{"a", block}, {"b", block}}),
                                     pt::parse_path(".b"), pt::parse_path(".a"));
    const auto [params, state] = nn::partition_state(model);
    CHECK(pt::leaves(state).size() == 3); // running mean, variance, count: once
    const pt::array xa = rnd::normal(rnd::make_key(6), {8, 3});
    const pt::array xb = rnd::normal(rnd::make_key(7), {8, 3});
    auto loss = [&](const pt::tree& p, const pt::tree& s) {
        // `p` arrives with its ties expanded, as every differentiated argument does: so must s.
        const pt::tree m = pt::combine({p, pt::expand(s)});
        const auto ctx = nn::context::train(rnd::make_key(8));
        const auto first = nn::apply_with_state(m["a"], xa, ctx.child("a"));
        // The second use reads the state the first wrote: the tied block, updated.
        const auto second = nn::apply_with_state(first.model, xb, ctx.child("b"));
        const pt::array value = pt::mean(pt::pow(first.y - second.y, 2.0));
        return std::pair{value, pt::record("Pair", {{"a", second.model}, {"b", second.model}})};
    };
    const auto [value, updated, grads] = pt::value_and_grad(loss)(params, state);
    // Gradients exist for the parameters only (None at the state); the state comes back
    // updated twice, untraced, in the tied structure.
    CHECK(pt::structure(grads) == pt::structure(params));
    const pt::tree new_state = nn::update_state(state, updated);
    CHECK(pt::structure(new_state) == pt::structure(state));
    const pt::tree counted =
        pt::expand(new_state)["a"]["layers"][1]["state"]["num_batches_tracked"];
    CHECK(counted.as_array().item() == 2);
    CHECK_FALSE(counted.as_array().trace());
    // Saved and loaded with the model: the state is part of the tree.
    const pt::tree trained = pt::combine({params, new_state});
    const auto path = std::filesystem::temp_directory_path() / "pt_state_test.safetensors";
    pt::save(path, trained);
    const pt::tree loaded = pt::load(path, trained);
    std::filesystem::remove(path);
    CHECK(pt::tree_equal(loaded, trained));
    CHECK(loaded.num_leaves() == trained.num_leaves());
    CHECK_FALSE(loaded.is_leaf());
}

TEST_CASE("nn state: a tied module applied twice in one call updates its one state twice",
          "[nn][state][shared]") {
    const pt::tree bn = nn::batch_norm(2, 1e-5, 0.5);
    const pt::tree model = pt::share(nn::sequential({bn, bn}), pt::parse_path(".layers[1]"),
                                     pt::parse_path(".layers[0]"));
    const pt::array x = pt::array::from_vector<float>({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
    const auto [y, updated] = nn::apply_with_state(model, x, nn::context::train(rnd::make_key(9)));
    const pt::tree st = pt::expand(updated)["layers"][0]["state"];
    CHECK(st["num_batches_tracked"].as_array().item() == 2);
    // The second use saw the first use's update (momentum 0.5 twice).
    CHECK(pt::same_node(pt::expand(updated)["layers"][1]["state"], st));
    CHECK(updated.num_leaves() == model.num_leaves());
}

TEST_CASE("nn state: BatchNorm input errors name the module", "[nn][state][errors]") {
    const pt::tree net = nn::sequential({nn::batch_norm(4)});
    CHECK_THROWS_MATCHES(nn::apply(net, pt::array::ones({8, 3})), pt::shape_error,
                         Catch::Message("nn::apply BatchNorm: at .layers[0]: expected an input "
                                        "[N, 4, ...], found f32[8,3]"));
    CHECK_THROWS_WITH(nn::apply(net, pt::array::ones({1, 4}), nn::context::train(rnd::make_key(1))),
                      Catch::Contains("more than one value per channel"));
    CHECK_THROWS_AS(nn::batch_norm(4, 1e-5, 1.5), pt::shape_error);
}
