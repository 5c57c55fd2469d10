// Weight-tied autoencoder: the decoder's weight is the TRANSPOSE of the encoder's, through a
// transforming `get` (source(path, {transpose})). The decoder's gradient flows back
// transposed into the one stored weight.
#include "train.hpp"

#include <paramtree/nn/layers.hpp>

#include <iostream>

namespace pt = paramtree;
namespace nn = paramtree::nn;
namespace rnd = paramtree::random;

int main(int argc, char** argv) {
    train::checker check;
    const auto ks = rnd::split(rnd::make_key(0), 2);
    const pt::tree untied = pt::record("AutoEncoder", {{"encoder", nn::linear(ks[0], 16, 4)},
                                                       {"decoder", nn::linear(ks[1], 4, 16)}});
    const pt::tree model =
        pt::share(untied, pt::parse_path(".decoder.weight"),
                  pt::source(pt::parse_path(".encoder.weight"), {pt::transform::transpose()}));
    std::cout << pt::pformat(model) << "\n";
    check(pt::count_parameters(model).elements == 16 * 4 + 4 + 16,
          "the decoder stores only its bias: " +
              std::to_string(pt::count_parameters(model).elements) + " parameters, " +
              std::to_string(pt::count_parameters(model).expanded_elements) + " untied");

    // Data on a 3-dimensional subspace of R^16: a 4-wide bottleneck can learn it.
    const pt::array codes = rnd::normal(rnd::make_key(1), {128, 3});
    const pt::array basis = rnd::normal(rnd::make_key(2), {3, 16}) * 0.5;
    const pt::array x = pt::matmul(codes, basis);
    auto loss = [&](const pt::tree& m) {
        const pt::array h = pt::tanh(nn::apply(m["encoder"], x));
        const pt::array d = nn::apply(m["decoder"], h) - x;
        return pt::mean(d * d);
    };
    const auto r = train::fit(model, loss, pt::optim::adam(0.01), train::steps(argc, argv, 300));
    std::cout << "reconstruction loss " << r.first << " -> " << r.last << "\n";
    check(r.last < r.first * 0.5, "training lowers the loss");
    const pt::tree full = pt::expand(r.params);
    check(pt::array_equal(full["decoder"]["weight"].as_array(),
                          pt::transpose(full["encoder"]["weight"].as_array())),
          "the tie held: decoder.weight == encoder.weight^T after training");
    check(r.params.num_leaves() == 3, "still 3 leaves (encoder weight and bias, decoder bias)");
    return check.exit_code();
}
