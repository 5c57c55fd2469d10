// Tests for <paramtree/autodiff.hpp>: gradients over trees, filters, aux outputs, argnum,
// ties (the gradient of a tied weight is the sum over its uses), threads, and errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/conv.hpp>
#include <paramtree/attention.hpp>
#include <paramtree/random.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

#include <thread>

namespace pt = paramtree;
using gradcheck::rand;

namespace {
pt::tree linear(std::uint32_t seed, std::size_t in, std::size_t out) {
    return pt::record("Linear",
                      {{"weight", rand(seed, {out, in})}, {"bias", rand(seed + 1, {out})}});
}
pt::array apply_linear(const pt::tree& l, const pt::array& x) {
    return pt::matmul(x, pt::transpose(l["weight"].as_array())) + l["bias"].as_array();
}
/// A weight-tied autoencoder (dec.weight = enc.weight^T, one Shared tie), 5 -> 3 -> 5.
pt::tree tied_autoencoder(std::uint32_t seed) {
    return pt::share(
        pt::record("AE", {{"enc", linear(seed, 5, 3)}, {"dec", linear(seed + 2, 3, 5)}}),
        pt::parse_path(".dec.weight"),
        pt::source(pt::parse_path(".enc.weight"), {pt::transform::transpose()}));
}
/// Its reconstruction loss on `x`.
pt::array reconstruction(const pt::tree& m, const pt::array& x) {
    const pt::array h = pt::tanh(apply_linear(m["enc"], x));
    const pt::array d = apply_linear(m["dec"], h) - x;
    return pt::mean(d * d);
}
} // namespace

TEST_CASE("autodiff: linear regression gradient equals the hand-derived formula", "[autodiff]") {
    const pt::array x = rand(1, {8, 3});
    const pt::array y = rand(2, {8, 1});
    const pt::tree params = pt::dict({{"w", rand(3, {3, 1})}, {"b", rand(4, {1})}});
    auto loss = [](const pt::tree& p, const pt::array& xs, const pt::array& ys) {
        const pt::array r = pt::matmul(xs, p["w"].as_array()) + p["b"].as_array() - ys;
        return pt::mean(r * r);
    };
    const auto [value, grads] = pt::value_and_grad(loss)(params, x, y);
    // L = mean(r^2): dL/dw = 2/N x^T r, dL/db = 2/N sum(r)
    const pt::array r = pt::matmul(x, params["w"].as_array()) + params["b"].as_array() - y;
    CHECK(value.item() == Approx(pt::mean(r * r).item()));
    CHECK(pt::array_equal(grads["w"].as_array(), pt::matmul(pt::transpose(x), r) * (2.0 / 8), 1e-12,
                          1e-12));
    CHECK(grads["b"].as_array().item() == Approx(pt::sum(r).item() * 2.0 / 8));
    CHECK(pt::structure(grads) == pt::structure(params));
    CHECK(!value.trace()); // the value comes back untraced
}

TEST_CASE("autodiff: the gradient tree has the argument's structure; filtered leaves are None",
          "[autodiff]") {
    const pt::tree params = pt::record("Model",
                                       {{"layer", linear(10, 2, 2)},
                                        {"steps", pt::array{1, 2}}, // int array: not differentiated
                                        {"name", "mlp"},            // string leaf
                                        {"scale", pt::array{2.0}}},
                                       {{"hidden", 2}});
    auto loss = [](const pt::tree& p) {
        return pt::sum(apply_linear(p["layer"], pt::array{{1.0, 2.0}}) * p["scale"].as_array());
    };
    const auto grads = pt::grad(loss)(params);
    CHECK(grads["steps"].is_none());
    CHECK(grads["name"].is_none());
    CHECK(grads["layer"]["weight"].as_array().shape() == pt::shape_type{2, 2});
    CHECK(grads.static_field("hidden") == pt::static_value(2));
    // Only the layer: everything else None (Equinox's filter_grad with a path predicate).
    pt::grad_options only_layer;
    only_layer.filter = [](const pt::tree& leaf) {
        return pt::is_float_array(leaf) && leaf.as_array().ndim() != 1;
    };
    const auto g2 = pt::grad(loss, only_layer)(params);
    CHECK(g2["layer"]["bias"].is_none());
    CHECK(g2["scale"].is_none());
    CHECK(pt::array_equal(g2["layer"]["weight"].as_array(), grads["layer"]["weight"].as_array()));
}

TEST_CASE("autodiff: has_aux, argnum, array arguments, unused leaves", "[autodiff]") {
    const pt::tree p = pt::dict({{"a", pt::array{2.0}}, {"unused", pt::array{1.0, 1.0}}});
    auto with_aux = [](const pt::tree& q, const pt::array& x) {
        const pt::array y = q["a"].as_array() * x;
        return std::pair{pt::sum(y), pt::dict({{"y", y}})};
    };
    const auto [value, aux, grads] = pt::value_and_grad(with_aux)(p, pt::array{3.0, 4.0});
    CHECK(value.item() == 14);
    CHECK(aux["y"].as_array().to_doubles() == std::vector<double>{6, 8});
    CHECK(!aux["y"].as_array().trace());
    CHECK(grads["a"].as_array().item() == 7);
    CHECK(grads["unused"].as_array().to_doubles() == std::vector<double>{0, 0}); // zeros

    pt::grad_options second;
    second.argnum = 1;
    const auto gx = pt::grad(
        [](const pt::tree& q, const pt::array& x) { return pt::sum(q["a"].as_array() * x * x); },
        second)(p, pt::array{3.0, 4.0});
    CHECK(gx.as_array().to_doubles() == std::vector<double>{12, 16});

    // A function that ignores its argument: zero gradient.
    const auto g0 = pt::grad([](const pt::array&) { return pt::array{5.0}; })(pt::array{1.0});
    CHECK(g0.as_array().item() == 0);
}

TEST_CASE("autodiff: a parameter used several times gets the sum of its uses", "[autodiff]") {
    const pt::array w{1.5, -2.0};
    auto f = [](const pt::array& v) { return pt::sum(v * v + v * 3.0 + pt::exp(v)); };
    const auto g = pt::grad(f)(w).as_array();
    CHECK(g.item(0) == Approx(2 * 1.5 + 3 + std::exp(1.5)));
    CHECK(g.item(1) == Approx(2 * -2.0 + 3 + std::exp(-2.0)));
}

TEST_CASE("autodiff: traced leaves share the parameters' buffers (no parameter copy)",
          "[autodiff]") {
    const pt::array w = rand(20, {64, 64});
    bool shared = false;
    (void)pt::grad([&](const pt::tree& p) {
        shared = pt::same_storage(p["w"].as_array(), w);
        return pt::sum(p["w"].as_array());
    })(pt::dict({{"w", w}}));
    CHECK(shared);
}

TEST_CASE("autodiff: a tied weight's gradient is the sum of its uses (Shared, identity get)",
          "[autodiff][sharing]") {
    // Tied embedding / output projection: logits = E[tokens] @ W_out^T with W_out := E.
    const pt::tree untied =
        pt::tuple({pt::record("Embedding", {{"weight", rand(30, {6, 4})}}), linear(31, 4, 6)});
    const pt::tree lm =
        pt::share(untied, pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
    const pt::array tokens = pt::array::from_vector<std::int64_t>({5}, {0, 3, 5, 3, 1});
    const pt::array targets = pt::array::from_vector<std::int64_t>({5}, {3, 5, 3, 1, 2});
    auto loss = [&](const pt::tree& m) {
        const pt::array h = pt::take(m[0]["weight"].as_array(), tokens);
        return pt::cross_entropy(apply_linear(m[1], pt::tanh(h)), targets);
    };
    const auto [value, grads] = pt::value_and_grad(loss)(lm);
    // The gradient has the PRUNED structure: one entry for the tied weight.
    CHECK(pt::structure(grads) == pt::structure(lm));
    CHECK(grads.num_leaves() == 2);

    // Against the untied model: per-copy gradients summed by hand.
    const pt::tree expanded = pt::expand(lm);
    const auto [v2, g_untied] = pt::value_and_grad(loss)(expanded);
    CHECK(value.item() == Approx(v2.item()));
    const pt::array summed = g_untied[0]["weight"].as_array() + g_untied[1]["weight"].as_array();
    const pt::tree g_expanded = pt::expand(grads);
    CHECK(pt::array_equal(pt::leaves(grads)[0].as_array(), summed, 1e-12, 1e-12));
    // ... which is exactly what contract (expand's transpose) computes.
    CHECK(pt::tree_equal(grads, pt::contract(lm, g_untied), {1e-12, 1e-12}));
    (void)g_expanded;
}

TEST_CASE("autodiff: a transposed tie sends its gradient back transposed", "[autodiff][sharing]") {
    // Hand-derived: f(W) = sum(W * A) + sum(W^T * B)  =>  df/dW = A + B^T.
    const pt::array A = rand(40, {2, 3}), B = rand(41, {3, 2});
    const pt::tree t =
        pt::dict({{"w", rand(42, {2, 3})}, {"wt", pt::array::zeros({3, 2}, pt::dtype::float64)}});
    const pt::tree tied =
        pt::share(t, pt::parse_path("['wt']"),
                  pt::source(pt::parse_path("['w']"), {pt::transform::transpose()}));
    auto f = [&](const pt::tree& p) {
        return pt::sum(p["w"].as_array() * A) + pt::sum(p["wt"].as_array() * B);
    };
    const auto g = pt::grad(f)(tied);
    CHECK(g.num_leaves() == 1);
    CHECK(pt::array_equal(pt::leaves(g)[0].as_array(), A + pt::transpose(B), 1e-12, 1e-12));

    // Weight-tied autoencoder, checked against finite differences and the untied model.
    const pt::tree ae = tied_autoencoder(43);
    const pt::array x = rand(47, {4, 5});
    auto recon = [&](const pt::tree& m) { return reconstruction(m, x); };
    gradcheck::check_tree(recon, ae);
    const auto g_tied = pt::grad(recon)(ae);
    const auto g_untied = pt::grad(recon)(pt::expand(ae));
    const pt::array by_hand =
        g_untied["enc"]["weight"].as_array() + pt::transpose(g_untied["dec"]["weight"].as_array());
    CHECK(pt::array_equal(pt::expand(g_tied)["enc"]["weight"].as_array(), by_hand, 1e-12, 1e-12));
}

TEST_CASE("autodiff: one block applied N times, checked against finite differences",
          "[autodiff][sharing]") {
    const pt::tree block = linear(50, 3, 3);
    const pt::tree model =
        pt::share(pt::list({block, block, block}),
                  std::vector{pt::parse_path("[1]"), pt::parse_path("[2]")}, pt::parse_path("[0]"));
    const pt::array x = rand(52, {2, 3});
    auto f = [&](const pt::tree& m) {
        pt::array h = x;
        for (std::size_t i = 0; i < 3; ++i)
            h = pt::tanh(apply_linear(m[i], h));
        return pt::sum(h * h);
    };
    CHECK(model.num_leaves() == 2);
    gradcheck::check_tree(f, model);
}

TEST_CASE("autodiff: whole-model gradients of an MLP match finite differences", "[autodiff]") {
    const pt::tree mlp = pt::list({linear(60, 4, 8), linear(62, 8, 8), linear(64, 8, 3)});
    const pt::array x = rand(66, {5, 4});
    const pt::array y = pt::array::from_vector<std::int64_t>({5}, {0, 2, 1, 1, 0});
    auto f = [&](const pt::tree& m) {
        pt::array h = pt::gelu(apply_linear(m[0], x));
        h = pt::layer_norm(pt::relu(apply_linear(m[1], h)) + h);
        return pt::cross_entropy(apply_linear(m[2], h), y);
    };
    gradcheck::check_tree(f, mlp);
}

TEST_CASE("autodiff: two threads take gradients at once", "[autodiff][threads]") {
    const pt::tree params = pt::list({linear(70, 16, 16), linear(72, 16, 1)});
    auto make_loss = [](std::uint32_t seed) {
        return [x = rand(seed, {32, 16})](const pt::tree& m) {
            return pt::mean(apply_linear(m[1], pt::tanh(apply_linear(m[0], x))));
        };
    };
    const auto expect_a = pt::grad(make_loss(1))(params);
    const auto expect_b = pt::grad(make_loss(2))(params);
    // Catch2's assertions are not thread-safe: record results, assert after join.
    bool same_a = true, same_b = true;
    std::thread ta([&] {
        for (int i = 0; i < 50; ++i)
            same_a = same_a && pt::tree_equal(pt::grad(make_loss(1))(params), expect_a);
    });
    std::thread tb([&] {
        for (int i = 0; i < 50; ++i)
            same_b = same_b && pt::tree_equal(pt::grad(make_loss(2))(params), expect_b);
    });
    ta.join();
    tb.join();
    CHECK(same_a);
    CHECK(same_b);
}

TEST_CASE("autodiff: bad use is a clear paramtree error", "[autodiff][errors]") {
    const pt::tree p = pt::dict({{"w", pt::array{1.0, 2.0}}, {"n", pt::array{1, 2}}});
    // Not a scalar.
    CHECK_THROWS_AS(pt::grad([](const pt::tree& q) { return q["w"].as_array(); })(p),
                    pt::shape_error);
    // argnum out of range, or not a tree/array.
    pt::grad_options o;
    o.argnum = 3;
    CHECK_THROWS_AS(pt::grad([](const pt::tree& q) { return pt::sum(q["w"].as_array()); }, o)(p),
                    pt::path_error);
    o.argnum = 1;
    CHECK_THROWS_AS(
        pt::grad([](const pt::tree& q, int) { return pt::sum(q["w"].as_array()); }, o)(p, 1),
        pt::leaf_error);
    // A filter selecting an int array names its path.
    pt::grad_options all;
    all.filter = pt::is_array;
    try {
        (void)pt::grad([](const pt::tree& q) { return pt::sum(q["w"].as_array()); }, all)(p);
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['n']");
    }
    // A traced array that escapes its gradient call cannot record any more.
    pt::array escaped;
    (void)pt::grad([&](const pt::array& x) {
        escaped = x * 2.0;
        return pt::sum(x);
    })(pt::array{1.0});
    CHECK(escaped.trace() != nullptr);
    CHECK_THROWS_AS(escaped + escaped, pt::sharing_error);
    CHECK(pt::stop_gradient(escaped).item() == 2); // its value is still readable
}

TEST_CASE("autodiff: grad of grad, to third order, over arrays and trees", "[autodiff][higher]") {
    // f = sum(x^4): first derivative 4x^3, second 12x^2, third 24x.
    const pt::array x{1.0, 2.0, 3.0};
    auto f = [](const pt::array& y) { return pt::sum(y * y * y * y); };
    auto d1 = [&](const pt::array& y) { return pt::sum(pt::grad(f)(y).as_array()); };
    auto d2 = [&](const pt::array& y) { return pt::sum(pt::grad(d1)(y).as_array()); };
    CHECK(pt::array_equal(pt::grad(f)(x).as_array(), pt::array{4.0, 32.0, 108.0}, 1e-12, 0));
    CHECK(pt::array_equal(pt::grad(d1)(x).as_array(), pt::array{12.0, 48.0, 108.0}, 1e-12, 0));
    CHECK(pt::array_equal(pt::grad(d2)(x).as_array(), pt::array{24.0, 48.0, 72.0}, 1e-12, 0));

    // Over a tree, with value_and_grad inside: the inner value stays differentiable too.
    const pt::tree params = pt::dict({{"w", x}, {"b", pt::array{0.5}}});
    auto inner = [](const pt::tree& p) {
        return pt::sum(pt::exp(p["w"].as_array() * p["b"].as_array()));
    };
    bool traced = false;
    auto outer = [&](const pt::tree& p) {
        const auto [value, g] = pt::value_and_grad(inner)(p);
        traced = value.trace() != nullptr; // traced by the outer call, when there is one
        return value + pt::sum(g["w"].as_array() * g["w"].as_array());
    };
    gradcheck::check_tree(outer, params);
    (void)pt::grad(outer)(params);
    CHECK(traced);
}

TEST_CASE("autodiff: second-order rules match finite differences of the gradient",
          "[autodiff][higher]") {
    using gradcheck::check_second_order;
    const auto a = rand(1, {3, 4}), b = rand(2, {3, 4}), row = rand(3, {4});
    const auto pos = rand(4, {3, 4}, 0.5, 2.0);
    using V = std::vector<pt::array>;
    check_second_order("arithmetic",
                       [](const V& v) {
                           return (v[0] + v[1]) * (v[0] - v[2]) / (v[1] * v[1] + 1.0) - v[0] * 3.0 +
                                  2.0 / (v[1] + 4.0) - v[2];
                       },
                       {a, b, row});
    check_second_order(
        "exp log sqrt",
        [](const V& v) { return pt::exp(v[0] * 0.5) * pt::log(v[1]) + pt::sqrt(v[1]) * v[0]; },
        {a, pos});
    check_second_order("pow",
                       [](const V& v) {
                           return pt::pow(v[1], v[0]) + pt::pow(v[1], 3.0) * v[0] +
                                  pt::pow(v[1], 0.0);
                       },
                       {a, pos});
    check_second_order("tanh sigmoid relu",
                       [](const V& v) {
                           return pt::tanh(v[0] * v[1]) + pt::sigmoid(v[0]) * pt::relu(v[1]) * v[0];
                       },
                       {a, b});
    check_second_order(
        "gelu",
        [](const V& v) { return pt::gelu(v[0] * v[1]) + pt::gelu(v[1] * v[0], true) * v[0]; },
        {a, b});
    check_second_order("reductions",
                       [](const V& v) {
                           const pt::array s = pt::sum(v[0] * v[0], {1}, true);
                           return pt::mean(s * v[1], {0}) * pt::max(v[0] * v[1], {0}) +
                                  pt::sum(pt::exp(v[0]));
                       },
                       {a, b});
    check_second_order("shapes",
                       [](const V& v) {
                           const pt::array t = pt::transpose(v[0]) * pt::transpose(v[0]);
                           const pt::array r = v[0].reshape({4, 3}) * t;
                           return pt::broadcast_to(v[1], {2, 3, 4}) *
                                  pt::swapaxes(r.reshape({4, 3, 1}), 0, 2).reshape({1, 3, 4});
                       },
                       {a, row});
    check_second_order(
        "where and astype",
        [](const V& v) {
            const auto mask = pt::array::from_vector<bool>({3, 1}, {true, false, true});
            const pt::array y = pt::where(mask, v[0] * v[0], pt::exp(v[1]));
            return (y * v[0]).astype(pt::dtype::float32).astype(pt::dtype::float64);
        },
        {a, b}, 1e-3);
    check_second_order(
        "matmul: matrices, batches, vectors",
        [](const V& v) {
            const pt::array m = pt::matmul(pt::tanh(v[0]), pt::transpose(v[1])); // [3, 3]
            const pt::array batch = pt::broadcast_to(pt::tanh(v[0]), {2, 3, 4}) * 0.5;
            const pt::array bt = pt::matmul(batch, pt::transpose(v[1] * v[1]));  // [2, 3, 3]
            const pt::array bb = pt::matmul(batch, pt::swapaxes(batch, -1, -2)); // both batched
            const pt::array vec = pt::matmul(v[2], pt::transpose(v[0]));         // [3]
            return pt::sum(m * m) + pt::sum(bt * bt) * 0.1 + pt::sum(bb) + vec * vec;
        },
        {a, b, row});
    check_second_order("linear_gelu, both forms",
                       [](const V& v) {
                           return pt::linear_gelu(v[0], v[1], v[2]) *
                                  pt::linear_gelu(v[0], v[1], v[2], true);
                       },
                       {rand(8, {2, 3, 4}), rand(9, {5, 4}), rand(10, {5})});
    check_second_order("linear, with and without bias",
                       [](const V& v) {
                           const pt::array h = pt::tanh(pt::linear(v[0], v[1], v[2]));
                           return pt::linear(h * h, pt::transpose(v[1]));
                       },
                       {rand(5, {2, 3, 4}), rand(6, {5, 4}), rand(7, {5})});
    check_second_order(
        "softmax family and cross entropy",
        [](const V& v) {
            const auto targets = pt::array::from_vector<std::int64_t>({3}, {2, 0, 3});
            return pt::softmax(v[0], 1) * pt::log_softmax(v[0] * v[1], 0) +
                   pt::cross_entropy(v[0] * v[1], targets);
        },
        {a, b});
    check_second_order("layer norm and rms norm",
                       [](const V& v) {
                           return pt::layer_norm(v[0], v[1], v[2], 1e-5) *
                                      pt::rms_norm(v[0] * v[0], v[1], 1e-6) +
                                  pt::layer_norm(v[0] * v[2], 1e-5);
                       },
                       {a, row, rand(8, {4})});
    check_second_order("attention",
                       [](const V& v) {
                           return pt::scaled_dot_product_attention(v[0], v[1], v[0] * v[1], 2,
                                                                   {.causal = true});
                       },
                       {rand(9, {2, 5, 4}), rand(10, {2, 5, 4})});
    check_second_order(
        "concatenate",
        [](const V& v) {
            const pt::array c = pt::concatenate({v[0] * v[0], pt::tanh(v[1]), v[0]}, 1);
            return c * pt::concatenate({v[1], v[0], v[1] * v[0]}, 1);
        },
        {a, b});
    check_second_order(
        "take and dropout",
        [](const V& v) {
            const auto idx = pt::array::from_vector<std::int64_t>({2, 2}, {1, 0, 2, 1});
            const pt::array e = pt::take(v[0] * v[0], idx);
            return pt::dropout(pt::random::make_key(3), e, 0.3) * pt::tanh(e);
        },
        {a});
}

TEST_CASE("autodiff: a tied model's Hessian-vector product is the untied one's, contracted",
          "[autodiff][higher][sharing]") {
    // Weight-tied autoencoder: dec.weight = enc.weight^T. With u = E(theta) the expansion,
    // H_theta v = E^T H_u (E v): expand v, take the untied product, contract it back.
    const pt::tree ae = tied_autoencoder(60);
    const pt::array x = rand(64, {4, 5});
    auto recon = [&](const pt::tree& m) { return reconstruction(m, x); };
    std::uint32_t seed = 70;
    const pt::tree v = pt::tree_map(
        [&](const pt::tree& leaf) { return pt::tree(rand(seed++, leaf.as_array().shape())); }, ae);
    const pt::tree hv = pt::hvp(recon, ae, v);
    CHECK(pt::structure(hv) == pt::structure(ae)); // one leaf for the tie, at second order too
    const pt::tree hv_untied = pt::hvp(recon, pt::expand(ae), pt::expand(v));
    const pt::tree contracted = pt::contract(ae, hv_untied);
    const auto got = pt::leaves(hv), want = pt::leaves(contracted);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        CHECK(pt::array_equal(got[i].as_array(), want[i].as_array(), 1e-10, 1e-12));
    // Against central differences of the tied gradient along v (the pruned leaves move).
    const double eps = 1e-5;
    const auto up = pt::leaves(pt::grad(recon)(gradcheck::along(ae, v, eps)));
    const auto down = pt::leaves(pt::grad(recon)(gradcheck::along(ae, v, -eps)));
    for (std::size_t i = 0; i < got.size(); ++i)
        CHECK(pt::array_equal(got[i].as_array(),
                              (up[i].as_array() - down[i].as_array()) / (2 * eps), 1e-6, 1e-6));
}

TEST_CASE("autodiff: a gradient penalty and a MAML step differentiate through the inner grad",
          "[autodiff][higher]") {
    const pt::tree critic = pt::dict({{"l1", linear(80, 3, 6)}, {"l2", linear(82, 6, 1)}});
    const pt::array real = rand(84, {5, 3});
    auto score = [](const pt::tree& p, const pt::array& x) {
        return apply_linear(p["l2"], pt::tanh(apply_linear(p["l1"], x)));
    };
    // WGAN-GP: the penalty's gradient w.r.t. the critic goes through d critic / d x.
    auto penalty = [&](const pt::tree& p) {
        const pt::array gx =
            pt::grad([&](const pt::array& x) { return pt::sum(score(p, x)); })(real).as_array();
        return pt::mean(pt::pow(pt::sqrt(pt::sum(gx * gx, {1})) - 1.0, 2.0));
    };
    gradcheck::check_tree(penalty, critic);

    // MAML: one inner SGD step on a support set, the loss after it on a query set.
    const pt::array xs = rand(86, {4, 3}), ys = rand(87, {4, 1}), xq = rand(88, {4, 3}),
                    yq = rand(89, {4, 1});
    auto task_loss = [&](const pt::tree& p, const pt::array& x, const pt::array& y) {
        const pt::array d = score(p, x) - y;
        return pt::mean(d * d);
    };
    auto meta_loss = [&](const pt::tree& p) {
        const pt::tree g = pt::grad(task_loss)(p, xs, ys);
        const pt::tree adapted = pt::tree_map(
            [](const pt::tree& w, const pt::tree& dw) {
                return pt::tree(w.as_array() - dw.as_array() * 0.1);
            },
            p, g);
        return task_loss(adapted, xq, yq);
    };
    gradcheck::check_tree(meta_loss, critic);
}

TEST_CASE("autodiff: differentiating through a first-order-only rule names the operation",
          "[autodiff][higher][errors]") {
    const pt::array x = rand(90, {1, 1, 5, 5}), w = rand(91, {2, 1, 3, 3});
    auto conv_loss = [&](const pt::array& k) {
        const pt::array y = pt::conv2d(x, k);
        return pt::sum(y * y);
    };
    // The inner gradient as a value (not differentiated again through conv2d) works...
    auto uses_value = [&](const pt::array& k) {
        return pt::sum(k * pt::stop_gradient(pt::grad(conv_loss)(k).as_array()));
    };
    CHECK(pt::array_equal(pt::grad(uses_value)(w).as_array(), pt::grad(conv_loss)(w).as_array(),
                          1e-12, 0));
    // ...differentiating through it is refused by name, not answered without conv2d's terms.
    auto through = [&](const pt::array& k) { return pt::sum(pt::grad(conv_loss)(k).as_array()); };
    try {
        (void)pt::grad(through)(w);
        FAIL("differentiated through conv2d's first-order rule");
    } catch (const pt::value_error& e) {
        CHECK(std::string(e.what()).find("conv2d") != std::string::npos);
        CHECK(std::string(e.what()).find("first-order") != std::string::npos);
    }
    // A gradient taken inside f that closes over the outer call's traced array (no traced
    // argument) records on the outer tape too: d/dx [d/dy sum(x * y)] = d/dx x = 1.
    pt::array outer;
    const pt::array g = pt::grad([&](const pt::array& x) {
                            outer = x;
                            return pt::sum(pt::grad([&](const pt::array& y) {
                                               return pt::sum(outer * y);
                                           })(pt::array{5.0})
                                               .as_array());
                        })(pt::array{1.0})
                            .as_array();
    CHECK(g.item() == 1.0);
}

TEST_CASE("autodiff: hvp refuses a direction of another structure, naming the path",
          "[autodiff][higher][errors]") {
    auto f = [](const pt::tree& p) { return pt::sum(pt::pow(p["w"].as_array(), 3.0)); };
    const pt::tree p = pt::dict({{"w", pt::array{1.0, 2.0}}, {"b", pt::array{0.5}}});
    try {
        (void)pt::hvp(f, p, pt::dict({{"w", pt::array{1.0, 0.0}}}));
        FAIL("a direction without 'b' was accepted");
    } catch (const pt::structure_error& e) {
        CHECK(std::string(e.what()).find("hvp") != std::string::npos);
    }
    try {
        (void)pt::hvp(f, p, pt::dict({{"w", pt::tree(2.0)}, {"b", pt::array{0.0}}}));
        FAIL("a direction with a number for an array was accepted");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['w']");
    }
}
