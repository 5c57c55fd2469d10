// Tests for <paramtree/nn/conv.hpp>: the convolutional modules' initialisation (PyTorch's
// bounds), application through nn::apply (a LeNet-style stack), gradients, and input errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/check_grad.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/nn/conv.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/ops.hpp>

#include <algorithm>
#include <cmath>

namespace pt = paramtree;
namespace nn = paramtree::nn;

TEST_CASE("nn conv: Conv2d initialises within PyTorch's bound and applies pt::conv2d",
          "[nn][conv]") {
    const auto key = pt::random::make_key(1);
    const pt::tree c =
        nn::conv2d(key, 4, 6, {3, 5}, {.stride = {2, 1}, .padding = {1, 2}, .groups = 2});
    const pt::array w = c["weight"].as_array(), b = c["bias"].as_array();
    CHECK(w.shape() == pt::shape_type{6, 2, 3, 5});
    const double bound = 1 / std::sqrt(2.0 * 3 * 5);
    const auto ws = w.to_doubles();
    CHECK(std::all_of(ws.begin(), ws.end(), [&](double v) { return std::abs(v) <= bound; }));
    CHECK(*std::max_element(ws.begin(), ws.end()) > 0.8 * bound); // uniform over the range
    const pt::array x = pt::random::normal(pt::random::make_key(2), {3, 4, 9, 8});
    const pt::array y = nn::apply(c, x);
    CHECK(pt::array_equal(y,
                          pt::conv2d(x, w, b, {.stride = {2, 1}, .padding = {1, 2}, .groups = 2})));
    const pt::tree no_bias = nn::conv1d(key, 3, 4, 3, {.padding = 1}, false);
    CHECK(no_bias["bias"].is_none());
    CHECK(nn::apply(no_bias, pt::array::ones({2, 3, 7})).shape() == pt::shape_type{2, 4, 7});
}

TEST_CASE("nn conv: a LeNet-style stack runs and its gradient is right", "[nn][conv]") {
    const auto k = pt::random::split(pt::random::make_key(3), 3);
    const pt::tree net = nn::sequential(
        {nn::conv2d(k[0], 1, 4, {3, 3}, {.padding = {1, 1}}, true, pt::dtype::float64),
         nn::activation("tanh"), nn::max_pool2d({}),
         nn::conv2d(k[1], 4, 6, {3, 3}, {}, true, pt::dtype::float64), nn::activation("relu"),
         nn::avg_pool2d({.kernel = {2, 2}}), nn::flatten(),
         nn::linear(k[2], 6, 3, true, pt::dtype::float64),
         nn::rms_norm(3, 1e-6, pt::dtype::float64)});
    const pt::array x =
        pt::random::normal(pt::random::make_key(4), {2, 1, 8, 8}, pt::dtype::float64);
    CHECK(nn::apply(net, x).shape() == pt::shape_type{2, 3});
    pt::grad_check_options options;
    options.max_elements_per_leaf = 12;
    const auto r = pt::check_grad([&](const pt::tree& p) { return nn::apply(p, x); },
                                  std::tuple{net}, options);
    INFO(r.to_string());
    CHECK(r);
}

TEST_CASE("nn conv: inputs that do not fit name the module's path", "[nn][conv][errors]") {
    const pt::tree net =
        nn::sequential({nn::conv2d(pt::random::make_key(5), 3, 8, {3, 3}), nn::max_pool2d({})});
    CHECK_THROWS_MATCHES(nn::apply(net, pt::array::ones({2, 1, 8, 8})), pt::shape_error,
                         Catch::Message("nn::apply Conv2d: at .layers[0]: expected images "
                                        "[N, 3, H, W], found f32[2,1,8,8]"));
    CHECK_THROWS_WITH(nn::apply(net, pt::array::ones({2, 3, 3, 3})),
                      Catch::Contains(".layers[1]") &&
                          Catch::Contains("an input at least 2 along the height"));
    CHECK_THROWS_AS(nn::conv2d(pt::random::make_key(6), 3, 8, {3, 3}, {.groups = 2}),
                    pt::shape_error);
}
