// Tests for <paramtree/nn/layers.hpp>: initialisation, shapes, values, gradients, errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/print.hpp>

#include <cmath>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

TEST_CASE("nn: Linear follows PyTorch's layout and initialisation", "[nn]") {
    const pt::tree l = nn::linear(rnd::make_key(0), 64, 32);
    CHECK(l.record_name() == "pt.nn.Linear");
    CHECK(l["weight"].as_array().shape() == pt::shape_type{32, 64});
    CHECK(l["bias"].as_array().shape() == pt::shape_type{32});
    CHECK(l.static_field("in_features") == pt::static_value(64));
    const auto w = l["weight"].as_array().to_doubles();
    const double bound = 1.0 / 8;
    CHECK(std::all_of(w.begin(), w.end(), [&](double v) { return std::abs(v) <= bound; }));
    CHECK(*std::max_element(w.begin(), w.end()) > 0.9 * bound); // fills the range
    // Same key, same layer; y = x W^T + b.
    CHECK(pt::array_equal(nn::linear(rnd::make_key(0), 64, 32)["weight"].as_array(),
                          l["weight"].as_array()));
    const pt::array x = pt::array::ones({5, 64});
    CHECK(pt::array_equal(
        nn::apply(l, x),
        pt::matmul(x, pt::transpose(l["weight"].as_array())) + l["bias"].as_array(), 1e-5, 1e-6));
    const pt::tree nb = nn::linear(rnd::make_key(1), 3, 2, false);
    CHECK(nb["bias"].is_none());
    CHECK(nn::apply(nb, pt::array::ones({3})).shape() == pt::shape_type{2});
}

TEST_CASE("nn: Embedding, LayerNorm, Activation, Dropout", "[nn]") {
    const pt::tree e = nn::embedding(rnd::make_key(2), 10, 4);
    const pt::array idx = pt::array::from_vector<std::int64_t>({2, 3}, {0, 9, 3, 3, 1, 0});
    const pt::array rows = nn::apply(e, idx);
    CHECK(rows.shape() == pt::shape_type{2, 3, 4});
    CHECK(rows.item(4) == e["weight"].as_array().item(9 * 4));
    const pt::tree ln = nn::layer_norm(4);
    const pt::array h = nn::apply(ln, rows);
    CHECK(std::abs(pt::mean(h, {-1}).item(0)) < 1e-5);
    CHECK(nn::apply(nn::activation("relu"), pt::array{-1.f, 2.f}).to_doubles() ==
          std::vector<double>{0, 2});
    CHECK_THROWS_AS(nn::activation("swish"), pt::leaf_error);
    const pt::tree d = nn::dropout(0.5);
    const pt::array ones = pt::array::ones({1000});
    CHECK(pt::same_storage(nn::apply(d, ones), ones)); // inference: identity
    const auto train = nn::context::train(rnd::make_key(3));
    const pt::array dropped = nn::apply(d, ones, train);
    CHECK(pt::sum(dropped).item() > 300);
    CHECK(pt::sum(dropped).item() < 1700);
    CHECK(pt::array_equal(dropped, nn::apply(d, ones, train))); // pure in its key
    CHECK_THROWS_AS(nn::apply(d, ones, nn::context{true, std::nullopt, {}}),
                    pt::leaf_error); // no key
    CHECK_THROWS_AS(nn::dropout(1.0), pt::shape_error);
}

TEST_CASE("nn: MLP and Sequential compose Linear layers", "[nn]") {
    const pt::tree m = nn::mlp(rnd::make_key(4), 3, 2, 16, 2, "tanh");
    CHECK(m["layers"].size() == 3);
    CHECK(m["layers"][1]["weight"].as_array().shape() == pt::shape_type{16, 16});
    const pt::array x = gradcheck::rand(1, {5, 3}).astype(pt::dtype::float32);
    pt::array by_hand = x;
    for (std::size_t i = 0; i < 3; ++i) {
        by_hand = pt::linear(by_hand, m["layers"][i]["weight"].as_array(),
                             m["layers"][i]["bias"].as_array());
        if (i < 2) by_hand = pt::tanh(by_hand);
    }
    CHECK(pt::array_equal(nn::apply(m, x), by_hand));
    const auto ks = rnd::split(rnd::make_key(5), 2);
    const pt::tree seq = nn::sequential({nn::linear(ks[0], 3, 8), nn::activation("gelu"),
                                         nn::dropout(0.1), nn::linear(ks[1], 8, 1)});
    CHECK(nn::apply(seq, x).shape() == pt::shape_type{5, 1});
    CHECK(pt::to_string(seq).starts_with("pt.nn.Sequential(layers=[pt.nn.Linear("));
    // A Linear followed by GELU runs as one fused linear_gelu: the values of the pair.
    for (const char* fn : {"gelu", "gelu_tanh"}) {
        INFO(fn);
        const bool approximate = std::string(fn) == "gelu_tanh";
        const pt::tree pair = nn::sequential({nn::linear(ks[0], 3, 8), nn::activation(fn)});
        const pt::array want = pt::gelu(pt::linear(x, pair["layers"][0]["weight"].as_array(),
                                                   pair["layers"][0]["bias"].as_array()),
                                        approximate);
        CHECK(pt::array_equal(nn::apply(pair, x), want, 1e-6, 1e-6));
        const pt::tree mlp = nn::mlp(ks[1], 3, 4, 6, 2, fn);
        pt::array h = x;
        for (std::size_t i = 0; i < 3; ++i) {
            h = pt::linear(h, mlp["layers"][i]["weight"].as_array(),
                           mlp["layers"][i]["bias"].as_array());
            if (i < 2) h = pt::gelu(h, approximate);
        }
        CHECK(pt::array_equal(nn::apply(mlp, x), h, 1e-6, 1e-6));
    }
}

TEST_CASE("nn: module gradients match finite differences (float64)", "[nn][grad]") {
    const auto ks = rnd::split(rnd::make_key(6), 3);
    const pt::tree model =
        nn::sequential({nn::linear(ks[0], 3, 5, true, pt::dtype::float64), nn::activation("gelu"),
                        nn::layer_norm(5, 1e-5, pt::dtype::float64),
                        nn::mlp(ks[1], 5, 2, 4, 1, "tanh", pt::dtype::float64)});
    const pt::array x = gradcheck::rand(2, {4, 3});
    auto loss = [&](const pt::tree& m) { return pt::mean(pt::pow(nn::apply(m, x), 2.0)); };
    gradcheck::check_tree(loss, model);
}

TEST_CASE("nn: wrong inputs name the module path and the shapes", "[nn][errors]") {
    const auto ks = rnd::split(rnd::make_key(7), 2);
    const pt::tree seq = nn::sequential({nn::linear(ks[0], 4, 8), nn::linear(ks[1], 7, 2)});
    try {
        (void)nn::apply(seq, pt::array::ones({3, 4}));
        FAIL("expected shape_error");
    } catch (const pt::shape_error& e) {
        CHECK(e.path() == ".layers[1]");
        CHECK(e.found() == "f32[3,8]");
        CHECK(std::string(e.what()).find("last axis is 7") != std::string::npos);
    }
    // An op failing inside a module gets the module's path too.
    const pt::tree e = nn::embedding(rnd::make_key(8), 5, 2);
    try {
        (void)nn::apply(nn::sequential({e}), pt::array::from_vector<std::int64_t>({1}, {9}));
        FAIL("expected shape_error");
    } catch (const pt::shape_error& err) {
        CHECK(err.path() == ".layers[0]");
    }
    CHECK_THROWS_AS(nn::apply(e, pt::array::ones({2})), pt::shape_error); // float indices
    CHECK_THROWS_AS(
        nn::apply(pt::record("Custom", {{"w", pt::array::ones({2})}}), pt::array::ones({2})),
        pt::structure_error);
    CHECK_THROWS_AS(nn::apply(pt::list({}), pt::array::ones({2})), pt::structure_error);
}
