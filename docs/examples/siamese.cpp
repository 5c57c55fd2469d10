// Seed 002 — PyTorch-style tying for a Siamese network: both branches use one encoder
// (`right = left`, as `linear2.weight = linear1.weight`), trained with a contrastive loss on
// synthetic pairs. The gradients of both branches add up in the one encoder.
#include "train.hpp"

#include <paramtree/nn/layers.hpp>

#include <iostream>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

int main(int argc, char** argv) {
    train::checker check;
    const pt::tree encoder = nn::mlp(rnd::make_key(0), 8, 4, 16, 1, "tanh");
    const pt::tree untied = pt::record("Siamese", {{"left", encoder}, {"right", encoder}});
    const pt::tree model = pt::tie(untied, pt::parse_path(".right"), pt::parse_path(".left"));
    std::cout << pt::pformat(model) << "\n";
    check(model.num_leaves() == encoder.num_leaves(), "one encoder's parameters, not two");

    // Pairs: similar (the same point plus noise, label 1) or dissimilar (two points, label 0).
    const std::size_t n = 64;
    const pt::array a = rnd::normal(rnd::make_key(1), {n, 8});
    const pt::array noise = rnd::normal(rnd::make_key(2), {n, 8}) * 0.1;
    const pt::array other = rnd::normal(rnd::make_key(3), {n, 8});
    const pt::array same = pt::array::build<float>({n, 1}, [](std::span<float> s) {
        for (std::size_t i = 0; i < s.size(); ++i)
            s[i] = i % 2 == 0 ? 1.f : 0.f;
    });
    const pt::array b = same * (a + noise) + (1.0 - same) * other;
    auto loss = [&](const pt::tree& m) {
        const pt::array d2 =
            pt::sum(pt::pow(nn::apply(m["left"], a) - nn::apply(m["right"], b), 2.0), {1}, true);
        const pt::array d = pt::sqrt(d2 + 1e-6);
        const pt::array far = pt::relu(1.0 - d); // margin 1
        return pt::mean(same * d2 + (1.0 - same) * far * far);
    };
    const auto r = train::fit(model, loss, pt::optim::adam(0.01), train::steps(argc, argv, 150));
    std::cout << "contrastive loss " << r.first << " -> " << r.last << "\n";
    check(r.last < r.first * 0.7, "training lowers the loss");
    const pt::tree full = pt::expand(r.params);
    check(pt::same_storage(full["left"]["layers"][0]["weight"].as_array(),
                           full["right"]["layers"][0]["weight"].as_array()),
          "the tie held: both branches hold the same buffer after training");
    check(!pt::array_equal(full["left"]["layers"][0]["weight"].as_array(),
                           encoder["layers"][0]["weight"].as_array()),
          "and that buffer was trained");
    return check.exit_code();
}
