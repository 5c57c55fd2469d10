// Tests for <paramtree/nn/attention.hpp>: causality, shapes, gradients, errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/nn/attention.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/shared.hpp>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

TEST_CASE("nn: causal self-attention never looks ahead", "[nn][attention]") {
    const pt::tree attn = nn::multi_head_attention(rnd::make_key(0), 8, 2);
    const pt::array x = rnd::normal(rnd::make_key(1), {2, 5, 8});
    const pt::array y = nn::apply(attn, x);
    CHECK(y.shape() == pt::shape_type{2, 5, 8});
    // Changing the last time step changes only the last output step.
    const pt::array mask_last = pt::array::build<float>({1, 5, 1}, [](std::span<float> m) {
        std::fill(m.begin(), m.end(), 0.0f);
        m[4] = 1;
    });
    const pt::array x2 = x + mask_last * 3.0;
    const pt::array y2 = nn::apply(attn, x2);
    const pt::array diff = pt::sum(pt::pow(y2 - y, 2.0), {0, 2});
    for (std::size_t t = 0; t < 4; ++t)
        CHECK(diff.item(t) < 1e-10);
    CHECK(diff.item(4) > 1e-3);
    // Unbatched input works and equals one batch row.
    const pt::array one = pt::reshape(pt::take(pt::reshape(x, {2, 40}), pt::array{1}), {5, 8});
    const pt::array row = pt::reshape(pt::take(pt::reshape(y, {2, 40}), pt::array{1}), {5, 8});
    CHECK(pt::array_equal(nn::apply(attn, one), row, 1e-5, 1e-5));
    CHECK_THROWS_AS(nn::multi_head_attention(rnd::make_key(0), 10, 3), pt::shape_error);
    CHECK(nn::causal_mask(3).to_doubles() == std::vector<double>{1, 0, 0, 1, 1, 0, 1, 1, 1});
}

TEST_CASE("nn: a Transformer block's gradients match finite differences", "[nn][attention][grad]") {
    const pt::tree block =
        nn::transformer_block(rnd::make_key(2), 4, 2, 8, 0.0, pt::dtype::float64);
    const pt::array x = gradcheck::rand(3, {2, 3, 4});
    auto loss = [&](const pt::tree& b) { return pt::mean(pt::pow(nn::apply(b, x), 2.0)); };
    gradcheck::check_tree(loss, block);
    CHECK(nn::apply(block, x).shape() == pt::shape_type{2, 3, 4});
}

TEST_CASE("nn: one block applied N times has N-independent parameters",
          "[nn][attention][sharing]") {
    auto universal = [](std::size_t n) {
        const pt::tree block = nn::transformer_block(rnd::make_key(4), 8, 2);
        std::vector<pt::tree> blocks(n, block);
        std::vector<pt::path> where;
        for (std::size_t i = 1; i < n; ++i)
            where.push_back(pt::path{pt::index_key{i}});
        return pt::share(pt::list(blocks), where, pt::path{pt::index_key{0}});
    };
    CHECK(pt::count_parameters(universal(2)).elements ==
          pt::count_parameters(universal(6)).elements);
    CHECK(pt::count_parameters(universal(6)).expanded_elements ==
          3 * pt::count_parameters(universal(2)).expanded_elements);
}

TEST_CASE("nn: attention input errors name the module", "[nn][attention][errors]") {
    const pt::tree block = nn::transformer_block(rnd::make_key(5), 8, 2);
    try {
        (void)nn::apply(block, pt::array::ones({2, 3, 6}));
        FAIL("expected shape_error");
    } catch (const pt::shape_error& e) {
        CHECK(e.found() == "f32[2,3,6]");
    }
    CHECK_THROWS_AS(nn::apply(block["attn"], pt::array::ones({1, 2, 3, 8})), pt::shape_error);
}
