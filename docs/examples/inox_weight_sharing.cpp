// Seed 003 — Inox's WeightSharingMLP: `l2` is a Reference to the same module as `l1`, and
// `l4.weight` to the same array as `l3.weight`. Inside a Scope the first occurrence of each
// tag is kept and the later ones are pruned at flatten and refilled at unflatten, so the
// parameters are exactly l1.weight, l1.bias, l3.weight, l3.bias, l4.bias. Trained, the
// listing does not change.
#include "seed_models.hpp"
#include "train.hpp"

#include <iostream>

namespace pt = paramtree;
namespace rnd = paramtree::random;

namespace {
std::string listing(const pt::tree& t) {
    std::string out;
    for (const auto& [p, leaf] : pt::flatten_with_path(t).leaves)
        out += (out.empty() ? "" : ", ") + pt::keystr(p);
    return out;
}
pt::array layer(const pt::tree& l, const pt::array& x) {
    return pt::linear(x, l["weight"].as_array(), l["bias"].as_array());
}
} // namespace

int main(int argc, char** argv) {
    train::checker check;
    const pt::tree mlp = seed_models::weight_sharing_mlp();
    std::cout << pt::pformat(mlp) << "\n";
    const std::string expected = ".l1.weight, .l1.bias, .l3.weight, .l3.bias, .l4.bias";
    check(listing(mlp) == expected, "parameters: " + listing(mlp));

    const pt::array x = rnd::normal(rnd::make_key(1), {32, 64});
    const pt::array y = pt::tanh(pt::sum(x, {1}, true) * 0.1 + x * 0.5);
    auto loss = [&](const pt::tree& m) {
        pt::array h = pt::relu(layer(m["l1"], x));
        h = pt::relu(layer(m["l2"], h));
        h = pt::relu(layer(m["l3"], h));
        const pt::array d = layer(m["l4"], h) - y;
        return pt::mean(d * d);
    };
    const auto r = train::fit(mlp, loss, pt::optim::adam(3e-3), train::steps(argc, argv, 100));
    std::cout << "loss " << r.first << " -> " << r.last << "\n";
    check(r.last < r.first * 0.8, "training lowers the loss");
    check(listing(r.params) == expected, "the listing after training: " + listing(r.params));
    const pt::tree full = pt::expand(r.params);
    check(pt::same_storage(full["l1"]["weight"].as_array(), full["l2"]["weight"].as_array()) &&
              pt::same_storage(full["l3"]["weight"].as_array(), full["l4"]["weight"].as_array()),
          "the ties held: l2 is l1, l4.weight is l3.weight");
    return check.exit_code();
}
