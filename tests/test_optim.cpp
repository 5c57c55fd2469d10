// Tests for <paramtree/optim.hpp>: hand-computed steps, schedules, masks, clipping, None
// gradients, ties (one state entry per tied weight), and training end to end.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/at.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/autodiff.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/optim.hpp>
#include <paramtree/random.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

#include <cmath>
#include <filesystem>
#include <limits>

namespace pt = paramtree;
namespace opt = paramtree::optim;

namespace {
double leaf0(const pt::tree& t) {
    return pt::leaves(t).at(0).as_array().item();
}
} // namespace

TEST_CASE("optim: two Adam steps match a hand computation", "[optim]") {
    const pt::tree params = pt::dict({{"w", pt::array{1.0}}});
    const auto adam = opt::adam(0.1, 0.9, 0.999, 1e-8);
    pt::tree state = adam.init(params);
    pt::tree p = params;
    double w = 1.0, m = 0, v = 0;
    const double grads[] = {0.5, -2.0};
    for (int step = 1; step <= 2; ++step) {
        const double g = grads[step - 1];
        auto [updates, next] = adam.update(pt::dict({{"w", pt::array{g}}}), state, p);
        p = opt::apply_updates(p, updates);
        state = next;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        const double mh = m / (1 - std::pow(0.9, step)), vh = v / (1 - std::pow(0.999, step));
        w -= 0.1 * mh / (std::sqrt(vh) + 1e-8);
        CHECK(p["w"].as_array().item() == Approx(w).epsilon(1e-12));
    }
    // The state is an ordinary tree: a step count and the two moments of w.
    CHECK(state[0]["count"].as_array().item() == 2);
    CHECK(state[0]["mu"]["w"].as_array().item() == Approx(m));
    CHECK(state[0]["nu"]["w"].as_array().item() == Approx(v));
    CHECK(state[1]["count"].as_array().item() == 2);
}

TEST_CASE("optim: SGD, momentum and Nesterov momentum", "[optim]") {
    const pt::tree p = pt::list({pt::array{1.0f}});
    const pt::tree g = pt::list({pt::array{1.0f}});
    auto run = [&](const opt::transformation& o, int steps) {
        pt::tree s = o.init(p), q = p;
        for (int i = 0; i < steps; ++i) {
            auto [u, next] = o.update(g, s, q);
            q = opt::apply_updates(q, u);
            s = next;
        }
        return leaf0(q);
    };
    CHECK(run(opt::sgd(0.1), 3) == Approx(0.7));
    // momentum 0.5, constant gradient 1: traces 1, 1.5, 1.75 -> 1 - 0.1 * 4.25
    CHECK(run(opt::sgd(0.1, 0.5), 3) == Approx(1 - 0.425));
    // Nesterov: updates g + 0.5 t = 1.5, 1.75, 1.875 -> 1 - 0.1 * 5.125
    CHECK(run(opt::sgd(0.1, 0.5, true), 3) == Approx(1 - 0.5125));
    CHECK(pt::leaves(opt::sgd(0.1).init(p)).size() == 1); // only a step count
}

TEST_CASE("optim: AdamW decays only the masked leaves", "[optim]") {
    const pt::tree p = pt::record("Linear", {{"weight", pt::array{2.0}}, {"bias", pt::array{2.0}}});
    const pt::tree zero_grads =
        pt::record("Linear", {{"weight", pt::array{0.0}}, {"bias", pt::array{0.0}}});
    const auto weights_only = [](const pt::path& path, const pt::tree&) {
        return pt::keystr(path).ends_with("weight");
    };
    const auto o = opt::adamw(0.1, 0.9, 0.999, 1e-8, 0.5, weights_only);
    auto [u, s] = o.update(zero_grads, o.init(p), p);
    const pt::tree q = opt::apply_updates(p, u);
    CHECK(q["weight"].as_array().item() == Approx(2.0 - 0.1 * 0.5 * 2.0)); // decayed
    CHECK(q["bias"].as_array().item() == 2.0);                             // not decayed
    // A tree of bools works as the mask too.
    const auto o2 = opt::adamw(0.1, 0.9, 0.999, 1e-8, 0.5,
                               pt::tree(pt::record("Linear", {{"weight", false}, {"bias", true}})));
    auto [u2, s2] = o2.update(zero_grads, o2.init(p), p);
    const pt::tree q2 = opt::apply_updates(p, u2);
    CHECK(q2["weight"].as_array().item() == 2.0);
    CHECK(q2["bias"].as_array().item() == Approx(1.9));
}

TEST_CASE("optim: clip_by_global_norm and global_norm", "[optim]") {
    const pt::tree g = pt::list({pt::array{3.0}, pt::array{4.0}, pt::tree{}});
    CHECK(opt::global_norm(g) == 5.0);
    const auto clip = opt::clip_by_global_norm(1.0);
    auto [u, s] = clip.update(g, clip.init(g), g);
    CHECK(u[0].as_array().item() == Approx(0.6));
    CHECK(u[1].as_array().item() == Approx(0.8));
    CHECK(u[2].is_none());
    auto [same, s2] = opt::clip_by_global_norm(10.0).update(g, pt::tree{}, g);
    CHECK(pt::same_node(same, g)); // under the limit: untouched
}

TEST_CASE("optim: schedules", "[optim]") {
    const auto lr = opt::warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, 0.1);
    CHECK(lr(0) == 0.0);
    CHECK(lr(5) == Approx(0.5));
    CHECK(lr(10) == Approx(1.0));
    CHECK(lr(60) == Approx(0.1 + 0.9 * 0.5)); // half way through the cosine
    CHECK(lr(110) == Approx(0.1));
    CHECK(lr(1000) == Approx(0.1));
    CHECK(opt::constant_schedule(0.3)(7) == 0.3);
    CHECK_THROWS_AS(opt::warmup_cosine_decay_schedule(0, 1, 10, 5), pt::shape_error);
    // A schedule drives the learning rate through the step count in the state.
    const pt::tree p = pt::list({pt::array{0.0}});
    const auto o = opt::sgd(opt::schedule([](std::int64_t step) { return double(step + 1); }));
    pt::tree s = o.init(p), q = p;
    for (int i = 0; i < 3; ++i) {
        auto [u, next] = o.update(pt::list({pt::array{1.0}}), s, q);
        q = opt::apply_updates(q, u);
        s = next;
    }
    CHECK(leaf0(q) == Approx(-(1 + 2 + 3)));
}

TEST_CASE("optim: None gradients (filtered leaves) leave parameters and state unchanged",
          "[optim]") {
    const pt::tree p =
        pt::dict({{"frozen", pt::array{1.0}}, {"w", pt::array{1.0}}, {"n", pt::array{3, 4}}});
    const auto o = opt::adam(0.1);
    const pt::tree state = o.init(p);
    CHECK(state[0]["mu"]["n"].is_none()); // no state for an int leaf
    const pt::tree g = pt::dict({{"frozen", pt::tree{}}, {"w", pt::array{1.0}}, {"n", pt::tree{}}});
    auto [u, s] = o.update(g, state, p);
    const pt::tree q = opt::apply_updates(p, u);
    CHECK(q["frozen"].as_array().item() == 1.0);
    CHECK(q["w"].as_array().item() == Approx(0.9));
    CHECK(pt::same_node(q["n"], p["n"]));
    CHECK(s[0]["mu"]["frozen"].as_array().item() == 0.0);
}

TEST_CASE("optim: a tied weight has one state entry and stays one parameter", "[optim][sharing]") {
    const pt::tree untied =
        pt::tuple({pt::record("Embedding", {{"weight", gradcheck::rand(1, {5, 3})}}),
                   pt::record("Head", {{"weight", gradcheck::rand(2, {5, 3})}})});
    const pt::tree tied =
        pt::share(untied, pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
    const auto o = opt::adam(0.01);
    const pt::tree state = o.init(tied);
    CHECK(pt::leaves(state[0]["mu"]).size() == 1);
    CHECK(pt::structure(state[0]["mu"]) == pt::structure(tied));
    const pt::array x = gradcheck::rand(3, {4, 3});
    auto loss = [&](const pt::tree& m) {
        const pt::array h = pt::matmul(x, pt::transpose(m[0]["weight"].as_array()));
        return pt::sum(pt::matmul(h, m[1]["weight"].as_array()) * pt::tanh(x));
    };
    pt::tree params = tied, s = state;
    for (int i = 0; i < 3; ++i) {
        auto [v, g] = pt::value_and_grad(loss)(params);
        auto [u, next] = o.update(g, s, params);
        params = opt::apply_updates(params, u);
        s = next;
    }
    CHECK(params.num_leaves() == 1);
    const pt::tree full = pt::expand(params);
    CHECK(pt::same_storage(full[0]["weight"].as_array(), full[1]["weight"].as_array()));
    CHECK(!pt::array_equal(full[0]["weight"].as_array(), untied[0]["weight"].as_array()));
}

TEST_CASE("optim: training lowers a regression loss", "[optim]") {
    const pt::array x = gradcheck::rand(10, {32, 3});
    const pt::array true_w{{1.0}, {-2.0}, {0.5}};
    const pt::array y = pt::matmul(x, true_w) + 0.3;
    pt::tree params = pt::dict({{"w", pt::array::zeros({3, 1}, pt::dtype::float64)},
                                {"b", pt::array::zeros({1}, pt::dtype::float64)}});
    auto loss = [&](const pt::tree& p) {
        const pt::array r = pt::matmul(x, p["w"].as_array()) + p["b"].as_array() - y;
        return pt::mean(r * r);
    };
    const auto o = opt::chain({opt::clip_by_global_norm(10.0), opt::adam(0.05)});
    pt::tree s = o.init(params);
    const double first = loss(params).item();
    for (int i = 0; i < 400; ++i) {
        auto [v, g] = pt::value_and_grad(loss)(params);
        auto [u, next] = o.update(g, s, params);
        params = opt::apply_updates(params, u);
        s = next;
    }
    CHECK(loss(params).item() < first * 1e-4);
    CHECK(params["w"].as_array().item(1) == Approx(-2.0).epsilon(0.01));
}

TEST_CASE("optim: mismatched trees are clear errors naming the path", "[optim][errors]") {
    const pt::tree p = pt::dict({{"w", pt::array{1.0, 2.0}}});
    CHECK_THROWS_AS(opt::apply_updates(p, pt::dict({{"v", pt::array{1.0, 2.0}}})),
                    pt::structure_error);
    try {
        (void)opt::apply_updates(p, pt::dict({{"w", pt::array{1.0}}}));
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['w']");
    }
    // With a None update before it, the bad leaf is still named by its own path.
    try {
        (void)opt::apply_updates(pt::dict({{"a", pt::array{1.0}}, {"b", pt::array{1.0, 2.0}}}),
                                 pt::dict({{"a", pt::tree{}}, {"b", pt::array{1.0}}}));
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['b']");
    }
    const auto o = opt::adam(0.1);
    CHECK_THROWS_AS(o.update(p, pt::tree{}, p), pt::structure_error);
    try {
        const pt::tree q = pt::dict({{"a", pt::array{1.0}}, {"w", pt::array{1.0, 2.0}}});
        (void)o.update(pt::dict({{"a", pt::tree{}}, {"w", pt::array{1.0}}}), o.init(q), q);
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['w']");
    }
    CHECK_THROWS_AS(o.update(pt::dict({{"w", pt::array{1.0f, 2.0f}}}), o.init(p), p),
                    pt::leaf_error);
}

TEST_CASE("optim: structure errors name grads, params and state, and say the tie fix",
          "[optim][errors][sharing]") {
    const pt::tree untied =
        pt::tuple({pt::record("Embedding", {{"weight", gradcheck::rand(1, {5, 3})}}),
                   pt::record("Head", {{"weight", gradcheck::rand(2, {5, 3})}})});
    const pt::tree lm = pt::share(untied, "[1].weight", "[0].weight");
    auto loss = [](const pt::tree& m) {
        return pt::sum(m[0]["weight"].as_array() * m[1]["weight"].as_array());
    };
    // The mistake: gradients of the expanded model, state of the tied one.
    const auto [v, g_full] = pt::value_and_grad(loss)(pt::expand(lm));
    for (const auto& o : {opt::adam(0.1), opt::adamw(0.1)}) {
        try {
            (void)o.update(g_full, o.init(lm), lm);
            FAIL("expected structure_error");
        } catch (const pt::structure_error& e) {
            const std::string what = e.what();
            INFO(what);
            CHECK(what.find("between grads and state.mu") != std::string::npos);
            CHECK(what.find("(as in grads)") != std::string::npos);
            CHECK(what.find("a Shared node in state.mu") != std::string::npos);
            CHECK(what.find("not of pt::expand of it") != std::string::npos);
            CHECK(what.find("tree 1") == std::string::npos);
        }
    }
    // apply_updates calls its trees params and updates.
    try {
        (void)opt::apply_updates(lm, g_full);
        FAIL("expected structure_error");
    } catch (const pt::structure_error& e) {
        CHECK_THAT(e.what(),
                   Catch::Contains("between params and updates") && Catch::Contains("pt::expand"));
    }
    // Same tie state, other shapes: named, without the tie hint.
    const pt::tree p = pt::dict({{"w", pt::array{1.0, 2.0}}});
    try {
        (void)opt::adam(0.1).update(pt::dict({{"v", pt::array{1.0, 2.0}}}), opt::adam(0.1).init(p),
                                    p);
        FAIL("expected structure_error");
    } catch (const pt::structure_error& e) {
        CHECK_THAT(e.what(), Catch::Contains("grads") && !Catch::Contains("pt::expand"));
    }
}

TEST_CASE("optim: a non-finite global norm poisons every update or raises, by policy",
          "[optim][errors]") {
    namespace opt = pt::optim;
    const pt::tree params = pt::dict({{"a", pt::array{1.f, 2.f}}, {"b", pt::array{3.f}}});
    const pt::tree grads =
        pt::dict({{"a", pt::array{0.5f, std::nanf("")}}, {"b", pt::array{0.25f}}});
    // propagate (the default, as optax): every float update becomes NaN, not only the leaf
    // that overflowed, and nothing passes through unclipped.
    const auto clip = opt::clip_by_global_norm(1.0);
    const auto [clipped, st] = clip.update(grads, clip.init(params), params);
    for (const auto& leaf : pt::leaves(clipped))
        for (const double v : leaf.as_array().to_doubles())
            CHECK(std::isnan(v));
    // Infinity too.
    const pt::tree inf = pt::dict({{"a", pt::array{0.5f, INFINITY}}, {"b", pt::array{0.25f}}});
    const auto [inf_clipped, st2] = clip.update(inf, clip.init(params), params);
    CHECK(std::isnan(inf_clipped["b"].as_array().item()));
    // error: a value_error naming the first non-finite leaf and element.
    const auto strict = opt::clip_by_global_norm(1.0, opt::nonfinite_policy::error);
    try {
        (void)strict.update(grads, strict.init(params), params);
        FAIL("no error for a NaN gradient");
    } catch (const pt::value_error& e) {
        CHECK(e.path() == "['a']");
        CHECK(e.found().find("at element 1") != std::string::npos);
    }
    // Finite gradients are untouched by the policy.
    const pt::tree fine = pt::dict({{"a", pt::array{0.1f, 0.1f}}, {"b", pt::array{0.1f}}});
    const auto [same, st3] = strict.update(fine, strict.init(params), params);
    CHECK(pt::tree_equal(same, fine));
}

TEST_CASE("optim: the one-pass AdamW equals its definition as a chain, state and all", "[optim]") {
    // adamw runs scale_by_adam, add_decayed_weights and scale_by_learning_rate in one loop;
    // it must agree with the chain it is defined as, over several steps of a schedule, with a
    // mask, a None gradient and a tied model's pruned tree, and keep the chain's state layout.
    const pt::tree base = pt::dict({{"w", pt::random::normal(pt::random::make_key(1), {4, 3})},
                                    {"b", pt::random::normal(pt::random::make_key(2), {3})},
                                    {"t", pt::array::zeros({3, 4})},
                                    {"n", 7}});
    const pt::tree params =
        pt::share(base, pt::parse_path("['t']"),
                  pt::source(pt::parse_path("['w']"), {pt::transform::transpose()}));
    const auto lr = opt::warmup_cosine_decay_schedule(0.0, 0.05, 2, 10, 0.001);
    const auto mask = [](const pt::path& p, const pt::tree&) { return pt::keystr(p) != "['b']"; };
    const auto fused = opt::adamw(lr, 0.9, 0.99, 1e-8, 0.1, mask);
    const auto chained =
        opt::chain({opt::scale_by_adam(0.9, 0.99, 1e-8), opt::add_decayed_weights(0.1, mask),
                    opt::scale_by_learning_rate(lr)});
    pt::tree pf = params, pc = params, sf = fused.init(params), sc = chained.init(params);
    CHECK(pt::structure(sf) == pt::structure(sc));
    for (int step = 0; step < 5; ++step) {
        const pt::tree g = pt::tree_map(
            [&](const pt::tree& leaf) -> pt::tree {
                if (!leaf.is_array()) return pt::tree{};
                return pt::random::normal(pt::random::make_key(100 + step),
                                          leaf.as_array().shape());
            },
            params);
        auto rf = fused.update(g, sf, pf);
        auto rc = chained.update(g, sc, pc);
        CHECK(pt::tree_equal(rf.updates, rc.updates, {.rtol = 1e-6, .atol = 1e-9}));
        CHECK(pt::tree_equal(rf.state, rc.state, {.rtol = 1e-6, .atol = 1e-9}));
        pf = opt::apply_updates(pf, rf.updates);
        pc = opt::apply_updates(pc, rc.updates);
        sf = rf.state;
        sc = rc.state;
    }
    CHECK(pt::tree_equal(pf, pc, {.rtol = 1e-6, .atol = 1e-9}));
    // A state of another optimizer is a structure_error.
    CHECK_THROWS_AS(fused.update(params, opt::sgd(0.1, 0.9).init(params), params),
                    pt::structure_error);
}

namespace {
/// A model for the fused step: a tied pair (one pruned leaf), float32 and float64 leaves,
/// 300 small leaves and one large one (so the pass splits across threads inside and across
/// leaves), and an integer leaf that gets no gradient.
pt::tree step_model() {
    std::vector<pt::tree> small;
    for (std::uint32_t i = 0; i < 300; ++i)
        small.push_back(pt::random::normal(pt::random::make_key(1000 + i), {7}));
    const pt::tree base =
        pt::dict({{"w", pt::random::normal(pt::random::make_key(1), {4, 3})},
                  {"t", pt::array::zeros({3, 4})},
                  {"big", pt::random::normal(pt::random::make_key(2), {300, 700})},
                  {"f64", pt::random::normal(pt::random::make_key(3), {5}, pt::dtype::float64)},
                  {"small", pt::list(std::move(small))},
                  {"n", 7}});
    return pt::share(base, pt::parse_path("['t']"),
                     pt::source(pt::parse_path("['w']"), {pt::transform::transpose()}));
}

/// Gradients for `params`: random at float leaves (scaled by `by`), None elsewhere.
pt::tree step_grads(const pt::tree& params, std::uint32_t seed, double by) {
    return pt::tree_map(
        [&](const pt::tree& leaf) -> pt::tree {
            if (!leaf.is_array() || !pt::is_inexact(leaf.as_array().dtype())) return pt::tree{};
            const pt::array& a = leaf.as_array();
            return (pt::random::normal(pt::random::make_key(seed), a.shape(), a.dtype()) * by);
        },
        params);
}
} // namespace

TEST_CASE("optim: step equals update then apply_updates, bit for bit, fused or not", "[optim]") {
    const auto mask = [](const pt::path& p, const pt::tree&) {
        return pt::keystr(p).find("small") == std::string::npos;
    };
    const auto lr = opt::warmup_cosine_decay_schedule(0.0, 0.05, 2, 10, 0.001);
    struct named {
        const char* name;
        opt::transformation t;
        bool fused;
    };
    const std::vector<named> cases = {
        {"adam", opt::adam(lr), true},
        {"adamw", opt::adamw(lr, 0.9, 0.99, 1e-8, 0.1, mask), true},
        {"clip + adamw", opt::chain({opt::clip_by_global_norm(1.0), opt::adamw(lr)}), true},
        {"clip(error) + adam",
         opt::chain({opt::clip_by_global_norm(5.0, opt::nonfinite_policy::error), opt::adam(lr)}),
         true},
        // Not fused: two scalings round twice; sgd has no fused step.
        {"clip + clip + adamw",
         opt::chain({opt::clip_by_global_norm(2.0), opt::clip_by_global_norm(1.0), opt::adamw(lr)}),
         false},
        {"clip + (clip + adam)",
         opt::chain({opt::clip_by_global_norm(2.0),
                     opt::chain({opt::clip_by_global_norm(1.0), opt::adam(lr)})}),
         true},
        {"sgd momentum", opt::sgd(0.1, 0.9), false}};
    const pt::tree params = step_model();
    for (const auto& [name, t, fused] : cases) {
        INFO(name);
        CHECK(static_cast<bool>(t.fused_step) == fused);
        pt::tree ps = params, pu = params, ss = t.init(params), su = t.init(params);
        for (std::uint32_t k = 0; k < 4; ++k) {
            // Steps 0 and 2 are clipped (a norm far above the limits), 1 and 3 are not.
            const pt::tree g = step_grads(params, 100 + k, k % 2 == 0 ? 10.0 : 1e-3);
            const opt::step_result r = opt::step(t, g, ss, ps);
            const opt::update_result u = t.update(g, su, pu);
            pu = opt::apply_updates(pu, u.updates);
            su = u.state;
            CHECK(pt::tree_equal(r.params, pu));
            CHECK(pt::tree_equal(r.state, su));
            ps = r.params;
            ss = r.state;
        }
        CHECK(ps.num_leaves() == params.num_leaves()); // the tie is still one leaf
        CHECK(!pt::tree_equal(ps, params));
    }
}

TEST_CASE("optim: a fused step handles non-finite gradients as the clip's policy says", "[optim]") {
    const pt::tree params = step_model();
    pt::tree g = step_grads(params, 7, 1.0);
    g = pt::tree_at(pt::parse_path("['big']"), g,
                    pt::array::full({300, 700}, std::nan("")).astype(pt::dtype::float32));
    const auto propagate = opt::chain({opt::clip_by_global_norm(1.0), opt::adamw(1e-3)});
    const auto r = opt::step(propagate, g, propagate.init(params), params);
    const auto u = propagate.update(g, propagate.init(params), params);
    CHECK(pt::tree_equal(r.params, opt::apply_updates(params, u.updates), {.equal_nan = true}));
    CHECK(std::isnan(r.params["small"][0].as_array().item())); // every update is NaN
    const auto error =
        opt::chain({opt::clip_by_global_norm(1.0, opt::nonfinite_policy::error), opt::adamw(1e-3)});
    CHECK_THROWS_WITH(opt::step(error, g, error.init(params), params),
                      Catch::Contains("['big']") && Catch::Contains("finite gradients"));
}

TEST_CASE("optim: a fused step reports the errors update reports", "[optim][errors]") {
    const pt::tree params = step_model();
    const auto o = opt::chain({opt::clip_by_global_norm(1.0), opt::adamw(1e-3)});
    const pt::tree state = o.init(params);
    // A gradient of the wrong shape names its leaf.
    pt::tree g = step_grads(params, 9, 1.0);
    g = pt::tree_at(pt::parse_path("['f64']"), g, pt::array::zeros({6}, pt::dtype::float64));
    CHECK_THROWS_WITH(opt::step(o, g, state, params),
                      Catch::Contains("['f64']") && Catch::Contains("f64[5]"));
    // Another optimizer's state.
    CHECK_THROWS_AS(opt::step(o, step_grads(params, 9, 1.0), opt::sgd(0.1).init(params), params),
                    pt::structure_error);
    // A gradient where the state has none (an integer parameter): the unfused rules apply.
    const pt::tree plain =
        pt::dict({{"w", pt::array{1.0f, 2.0f}}, {"n", pt::array::scalar<std::int64_t>(7)}});
    const pt::tree gi =
        pt::dict({{"w", pt::array{0.5f, 0.5f}}, {"n", pt::array::scalar<std::int64_t>(1)}});
    const auto adam = opt::adam(0.1);
    const auto u = adam.update(gi, adam.init(plain), plain);
    const auto r = opt::step(adam, gi, adam.init(plain), plain);
    CHECK(pt::tree_equal(r.params, opt::apply_updates(plain, u.updates)));
}

TEST_CASE("optim: a step with nothing to update (all gradients None) keeps everything", "[optim]") {
    // What a process that owns no leaf of a sharded model runs.
    const pt::tree params = pt::dict({{"w", pt::array{1.0f, 2.0f}}, {"b", pt::array{0.5f}}});
    const pt::tree none = pt::dict({{"w", pt::tree()}, {"b", pt::tree()}});
    const auto o = opt::chain({opt::clip_by_global_norm(1.0), opt::adamw(1e-2)});
    const auto r = opt::step(o, none, o.init(params), params);
    CHECK(pt::tree_equal(r.params, params));
    const auto u = o.update(none, o.init(params), params);
    CHECK(pt::tree_equal(r.state, u.state));
    CHECK(pt::tree_equal(opt::step(o, pt::tree(), o.init(pt::tree()), pt::tree()).params,
                         pt::tree()));
}

TEST_CASE("optim: the global norm is finite for finite gradients at the edges of float64 and "
          "float32",
          "[optim]") {
    // 1e200 squared overflows and 1e-200 squared vanishes; the norm does neither.
    const pt::tree big = pt::dict({{"a", pt::array::full({4}, 1e200, pt::dtype::float64)},
                                   {"b", pt::array::full({5}, -1e200, pt::dtype::float64)}});
    CHECK(pt::optim::global_norm(big) == Approx(3e200).epsilon(1e-12));
    const pt::tree small = pt::dict({{"a", pt::array::full({4}, 3e-200, pt::dtype::float64)}});
    CHECK(pt::optim::global_norm(small) == Approx(6e-200).epsilon(1e-12));
    const float fmax = std::numeric_limits<float>::max();
    const pt::tree f32 = pt::dict({{"a", pt::array::full({4}, fmax, pt::dtype::float32)}});
    CHECK(pt::optim::global_norm(f32) == Approx(2.0 * fmax).epsilon(1e-6));
    // Clipping such gradients gives finite updates of the clipped norm, not NaN.
    const auto clip = pt::optim::clip_by_global_norm(1.0);
    const auto [updates, state] = clip.update(big, clip.init(big), big);
    CHECK(std::isfinite(pt::optim::global_norm(updates)));
    CHECK(pt::optim::global_norm(updates) == Approx(1.0).epsilon(1e-9));
    // A real infinity is still not finite.
    const pt::tree inf = pt::dict(
        {{"a", pt::array::full({2}, std::numeric_limits<double>::infinity(), pt::dtype::float64)},
         {"b", pt::array::full({2}, 1e200, pt::dtype::float64)}});
    CHECK(std::isinf(pt::optim::global_norm(inf)));
    CHECK(pt::optim::global_norm(pt::dict({{"z", pt::array::zeros({3})}})) == 0.0);
}

TEST_CASE("optim: multi_transform gives each group its transformation and its own state",
          "[optim][multi_transform]") {
    const pt::tree params = pt::dict({{"a", pt::array::ones({3})}, {"b", pt::array::ones({2})}});
    const pt::tree grads =
        pt::dict({{"a", pt::array::full({3}, 2.0)}, {"b", pt::array::full({2}, 2.0)}});
    const auto opt = pt::optim::multi_transform(
        pt::optim::labels([](const pt::path& p, const pt::tree&) {
            return pt::keystr(p) == "['a']" ? std::string("train") : std::string("still");
        }),
        {{"train", pt::optim::sgd(0.5)}, {"still", pt::optim::set_to_zero()}});
    const pt::tree state = opt.init(params);
    CHECK(state["labels"]["a"].as<std::string>() == "train");
    const auto [updates, next] = opt.update(grads, state, params);
    CHECK(updates["a"].as_array().to_doubles() == std::vector<double>{-1, -1, -1});
    CHECK(updates["b"].is_none());
    const pt::tree stepped = pt::optim::apply_updates(params, updates);
    CHECK(stepped["b"].as_array().to_doubles() == std::vector<double>{1, 1});
    // Labels as a tree of strings, and as patterns, give the same groups.
    const auto by_tree = pt::optim::multi_transform(
        pt::optim::labels(pt::dict({{"a", "train"}, {"b", "still"}})),
        {{"train", pt::optim::sgd(0.5)}, {"still", pt::optim::set_to_zero()}});
    CHECK(pt::tree_equal(by_tree.update(grads, by_tree.init(params), params).updates, updates));
    const auto by_pattern = pt::optim::multi_transform(
        pt::optim::labels({{pt::pattern("a"), "train"}}, "still"),
        {{"train", pt::optim::sgd(0.5)}, {"still", pt::optim::set_to_zero()}});
    CHECK(
        pt::tree_equal(by_pattern.update(grads, by_pattern.init(params), params).updates, updates));
    // A label nobody handles is refused when the state is made.
    const auto missing =
        pt::optim::multi_transform(pt::optim::labels({{pt::pattern("a"), "train"}}, "other"),
                                   {{"train", pt::optim::sgd(0.5)}});
    CHECK_THROWS_AS(missing.init(params), pt::value_error);
}

TEST_CASE("optim: freeze keeps no optimizer state for frozen leaves; a tie is one group",
          "[optim][multi_transform]") {
    const pt::tree params = pt::dict(
        {{"layers",
          pt::list({pt::dict({{"w", pt::array::ones({4})}, {"b", pt::array::ones({4})}}),
                    pt::dict({{"w", pt::array::ones({4})}, {"b", pt::array::ones({4})}})})}});
    const auto opt = pt::optim::freeze(pt::pattern("layers[0].**"), pt::optim::adam(0.1));
    const pt::tree state = opt.init(params);
    // Adam's moments exist for the two trained leaves only.
    std::size_t moments = 0;
    for (const auto& leaf : pt::leaves(state["inner"]["trained"]))
        moments += leaf.is_array() && leaf.as_array().size() == 4 ? 1 : 0;
    CHECK(moments == 4); // mu and nu of layers[1].w and layers[1].b
    const pt::tree grads =
        pt::tree_map([](const pt::tree& p) { return pt::tree(p.as_array() * 3.0); }, params);
    const auto [updates, next] = opt.update(grads, state, params);
    CHECK(updates["layers"][0]["w"].is_none());
    CHECK(updates["layers"][1]["w"].as_array().item(0) < 0);
    // A tie: the tied position and its source must be in one group.
    const pt::tree tied = pt::share(params, "layers[1]", "layers[0]");
    CHECK_THROWS_AS(pt::optim::freeze(pt::pattern("layers[0].**"), pt::optim::adam(0.1)).init(tied),
                    pt::sharing_error);
    const auto both = pt::optim::freeze(pt::pattern("layers.*.**"), pt::optim::adam(0.1));
    std::size_t tied_moments = 0; // all frozen: no moment at all, only step counts
    for (const auto& leaf : pt::leaves(both.init(tied)["inner"]["trained"]))
        tied_moments += leaf.is_array() && leaf.as_array().size() == 4 ? 1 : 0;
    CHECK(tied_moments == 0);
    // The state (labels included) saves and loads like any tree.
    const auto file = std::filesystem::temp_directory_path() / "pt_freeze_state.safetensors";
    pt::save(file, state);
    CHECK(pt::tree_equal(pt::load_tree(file), state));
    std::filesystem::remove(file);
}

namespace {
// A tied two-layer model (the head reads the embedding transposed) in float64, and the mean
// squared error of a batch of rows [first, last) of x against y.
pt::tree accumulation_model() {
    const pt::tree base = pt::dict({{"embed", gradcheck::rand(11, {3, 5})},
                                    {"head", gradcheck::rand(12, {5, 3})},
                                    {"bias", gradcheck::rand(13, {3})}});
    return pt::share(base, pt::parse_path("['head']"),
                     pt::source(pt::parse_path("['embed']"), {pt::transform::transpose()}));
}
pt::array batch_loss(const pt::tree& m, const pt::array& x, const pt::array& y) {
    const pt::array h = pt::tanh(pt::matmul(x, m["embed"].as_array()));
    const pt::array out = pt::matmul(h, m["head"].as_array()) + m["bias"].as_array();
    return pt::mean((out - y) * (out - y));
}
pt::array rows_of(const pt::array& a, std::size_t first, std::size_t last) {
    const auto v = a.to_doubles();
    const std::size_t w = a.shape()[1];
    return pt::array::from_vector<double>(
        {last - first, w}, std::vector<double>(v.begin() + static_cast<std::ptrdiff_t>(first * w),
                                               v.begin() + static_cast<std::ptrdiff_t>(last * w)));
}
} // namespace

TEST_CASE("optim: multi_steps over k mini-batches equals one step on the k-times-larger batch",
          "[optim][multi_steps]") {
    const pt::tree params0 = accumulation_model();
    const pt::array x = gradcheck::rand(21, {8, 3});
    const pt::array y = gradcheck::rand(22, {8, 3});
    // One Adam step (clipped) on the whole batch...
    const auto whole = opt::chain({opt::clip_by_global_norm(0.5), opt::adam(0.05)});
    pt::tree big = params0;
    pt::tree big_state = whole.init(big);
    // ...against the same optimizer fed 4 mini-batches of 2 rows, twice (two real steps).
    const auto acc =
        opt::multi_steps(4, opt::chain({opt::clip_by_global_norm(0.5), opt::adam(0.05)}));
    pt::tree small = params0;
    pt::tree small_state = acc.init(small);
    // The sum of gradients is one leaf per stored leaf: the tie has one.
    CHECK(pt::structure(small_state["grad_sum"]) == pt::structure(params0));
    for (int step = 0; step < 2; ++step) {
        auto [v, g] =
            pt::value_and_grad([&](const pt::tree& m) { return batch_loss(m, x, y); })(big);
        auto [u, next] = whole.update(g, big_state, big);
        big = opt::apply_updates(big, u);
        big_state = next;
        for (std::size_t mb = 0; mb < 4; ++mb) {
            const pt::array xs = rows_of(x, 2 * mb, 2 * mb + 2),
                            ys = rows_of(y, 2 * mb, 2 * mb + 2);
            auto [vs, gs] =
                pt::value_and_grad([&](const pt::tree& m) { return batch_loss(m, xs, ys); })(small);
            auto [us, nexts] = acc.update(gs, small_state, small);
            if (mb < 3) { // between steps: no update, the parameters do not move
                for (const auto& leaf : pt::leaves(us))
                    CHECK(leaf.is_none());
                CHECK(nexts["mini_step"].as_array().item() == static_cast<double>(mb + 1));
            }
            small = opt::apply_updates(small, us);
            small_state = nexts;
        }
        CHECK(small_state["mini_step"].as_array().item() == 0);
        CHECK(pt::tree_equal(small, big, {.rtol = 1e-12, .atol = 1e-12}));
    }
    // The tie held throughout, and the state saves and loads whole.
    const pt::tree full = pt::expand(small);
    CHECK(pt::array_equal(full["head"].as_array(), pt::transpose(full["embed"].as_array())));
    const auto file = std::filesystem::temp_directory_path() / "pt_multi_steps_state.safetensors";
    pt::save(file, small_state);
    CHECK(pt::tree_equal(pt::load_tree(file), small_state));
    std::filesystem::remove(file);
    // multi_steps(1, inner) is inner.
    const auto one = opt::multi_steps(1, opt::sgd(0.1));
    auto [v, g] =
        pt::value_and_grad([&](const pt::tree& m) { return batch_loss(m, x, y); })(params0);
    CHECK(pt::tree_equal(one.update(g, one.init(params0), params0).updates,
                         opt::sgd(0.1).update(g, opt::sgd(0.1).init(params0), params0).updates));
}

TEST_CASE("optim: multi_steps and ema refuse bad settings and foreign states",
          "[optim][multi_steps][ema][errors]") {
    CHECK_THROWS_AS(opt::multi_steps(0, opt::sgd(0.1)), pt::value_error);
    CHECK_THROWS_AS(opt::ema(1.5, opt::sgd(0.1)), pt::value_error);
    CHECK_THROWS_AS(opt::ema(std::nan(""), opt::sgd(0.1)), pt::value_error);
    const pt::tree params = accumulation_model();
    const pt::tree grads = pt::tree_map([](const pt::tree& p) { return p; }, params);
    // A state of multi_steps(2) given to multi_steps(3): named, not silently re-planned.
    const pt::tree two = opt::multi_steps(2, opt::sgd(0.1)).init(params);
    try {
        (void)opt::multi_steps(3, opt::sgd(0.1)).update(grads, two, params);
        FAIL("a multi_steps(2) state was accepted by multi_steps(3)");
    } catch (const pt::value_error& e) {
        CHECK(std::string(e.what()).find("multi_steps(3)") != std::string::npos);
    }
    CHECK_THROWS_AS(opt::ema_params(two, params), pt::structure_error);
    CHECK_THROWS_AS(opt::multi_steps(2, opt::sgd(0.1)).update(grads, pt::tree(), params),
                    pt::error);
}

TEST_CASE("optim: ema keeps shadow parameters once per tie, saved with the state", "[optim][ema]") {
    const pt::tree params0 = accumulation_model();
    const auto o = opt::ema(0.75, opt::sgd(0.1));
    pt::tree params = params0;
    pt::tree state = o.init(params);
    CHECK(pt::tree_equal(opt::ema_params(state, params), params0)); // starts at the parameters
    CHECK(pt::structure(state["shadow"]) == pt::structure(params0));
    const pt::array x = gradcheck::rand(31, {4, 3}), y = gradcheck::rand(32, {4, 3});
    // The oracle: the same average kept by hand over the expanded (untied) parameters.
    pt::tree oracle = pt::expand(params0);
    for (int step = 0; step < 3; ++step) {
        auto [v, g] =
            pt::value_and_grad([&](const pt::tree& m) { return batch_loss(m, x, y); })(params);
        auto [u, next] = o.update(g, state, params);
        params = opt::apply_updates(params, u);
        state = next;
        oracle = pt::tree_map(
            [](const pt::tree& s, const pt::tree& p) {
                return pt::tree(s.as_array() * 0.75 + p.as_array() * 0.25);
            },
            oracle, pt::expand(params));
    }
    const pt::tree averaged = opt::ema_params(state, params);
    CHECK(pt::structure(averaged) == pt::structure(params)); // the tie is kept
    CHECK(pt::tree_equal(pt::expand(averaged), oracle, {.rtol = 1e-12, .atol = 1e-12}));
    CHECK(state["count"].as_array().item() == 3);
    const auto file = std::filesystem::temp_directory_path() / "pt_ema_state.safetensors";
    pt::save(file, state);
    CHECK(pt::tree_equal(opt::ema_params(pt::load_tree(file), params), averaged));
    std::filesystem::remove(file);
}
