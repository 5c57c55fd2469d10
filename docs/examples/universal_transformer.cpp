// Universal Transformer / ALBERT: ONE Transformer block applied N times. The N positions are
// ties to block 0, so the parameter count does not depend on N, and the block's gradient is
// the sum over its N applications. Trained on next-token prediction of modular sequences.
#include "train.hpp"

#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/layers.hpp>

#include <iostream>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

namespace {
constexpr std::size_t vocab = 11, dim = 32, context = 12;

pt::tree universal(std::size_t n) {
    const auto ks = rnd::split(rnd::make_key(0), 4);
    std::vector<pt::tree> blocks(n, nn::transformer_block(ks[0], dim, 4));
    std::vector<pt::path> repeats;
    for (std::size_t i = 1; i < n; ++i)
        repeats.push_back(pt::parse_path(".blocks[" + std::to_string(i) + "]"));
    const pt::tree model =
        pt::record("UniversalTransformer", {{"embed", nn::embedding(ks[1], vocab, dim)},
                                            {"pos", nn::embedding(ks[2], context, dim)},
                                            {"blocks", pt::list(blocks)},
                                            {"norm", nn::layer_norm(dim)},
                                            {"head", nn::linear(ks[3], dim, vocab)}});
    if (n == 1) return model;
    return pt::share(model, repeats, pt::parse_path(".blocks[0]"));
}

pt::array logits(const pt::tree& m, const pt::array& tokens) {
    const std::size_t t = tokens.shape()[1];
    pt::array h =
        nn::apply(m["embed"], tokens) + nn::apply(m["pos"], pt::array::arange(t, pt::dtype::int64));
    for (std::size_t i = 0; i < m["blocks"].size(); ++i)
        h = nn::apply(m["blocks"][i], h);
    return nn::apply(m["head"], nn::apply(m["norm"], h));
}
} // namespace

int main(int argc, char** argv) {
    train::checker check;
    const auto c2 = pt::count_parameters(universal(2)), c6 = pt::count_parameters(universal(6));
    std::cout << "parameters with N = 2: " << c2.elements << ", N = 6: " << c6.elements
              << " (untied, N = 6 would hold " << c6.expanded_elements << ")\n";
    check(c2.elements == c6.elements, "the parameter count does not depend on N");

    // Sequences x_t = (a + b t) mod 11: the next token follows from the ones before.
    const std::size_t batch = 32;
    const auto ab = rnd::bits(rnd::make_key(1), 2 * batch);
    std::vector<std::int64_t> xs, ys;
    for (std::size_t i = 0; i < batch; ++i)
        for (std::size_t t = 0; t < context; ++t) {
            xs.push_back(static_cast<std::int64_t>((ab[2 * i] + ab[2 * i + 1] % 4 * t) % vocab));
            ys.push_back(
                static_cast<std::int64_t>((ab[2 * i] + ab[2 * i + 1] % 4 * (t + 1)) % vocab));
        }
    const pt::array x = pt::array::from_vector<std::int64_t>({batch, context}, xs);
    const pt::array y = pt::array::from_vector<std::int64_t>({batch, context}, ys);
    const pt::tree model = universal(4);
    std::cout << pt::pformat(model) << "\n";
    auto loss = [&](const pt::tree& m) { return pt::cross_entropy(logits(m, x), y); };
    const auto r = train::fit(model, loss, pt::optim::adam(3e-3), train::steps(argc, argv, 60));
    std::cout << "loss " << r.first << " -> " << r.last << "\n";
    check(r.last < r.first * 0.8, "training lowers the loss");
    const pt::tree full = pt::expand(r.params);
    bool same = true;
    for (std::size_t i = 1; i < 4; ++i)
        same = same && pt::same_storage(full["blocks"][0]["attn"]["q"]["weight"].as_array(),
                                        full["blocks"][i]["attn"]["q"]["weight"].as_array());
    check(same, "the tie held: all 4 applications use block 0's buffers after training");
    check(pt::count_parameters(r.params).elements == c2.elements, "and the count is unchanged");
    return check.exit_code();
}
