// paramtree — the flagship example for now: a tour of an MLP's parameter tree.
// Builds a model, prints it, flattens it, takes an "optimizer step" with tree_map, edits one
// layer with tree_at and shows what stayed shared. Run by scripts/demo and by the test suite.
#include <paramtree/paramtree.hpp>

#include <cstdlib>
#include <iostream>

namespace pt = paramtree;

namespace {

pt::tree linear(std::size_t in, std::size_t out) {
    return pt::record(
        "Linear", {{"weight", pt::array::full({out, in}, 0.1)}, {"bias", pt::array::zeros({out})}},
        {{"in_features", static_cast<std::int64_t>(in)},
         {"out_features", static_cast<std::int64_t>(out)}});
}

void require(bool ok, const char* what) {
    if (!ok) {
        std::cerr << "demo check failed: " << what << "\n";
        std::exit(1);
    }
}

} // namespace

int main() {
    const pt::tree model = pt::record(
        "MLP", {{"layers", pt::list({linear(784, 256), linear(256, 256), linear(256, 10)})}},
        {{"activation", "relu"}});

    std::cout << "model:\n" << pt::pformat(model) << "\n\n";
    auto [leaves, def] = pt::flatten_with_path(model);
    std::size_t count = 0;
    for (const auto& [p, leaf] : leaves) {
        std::cout << "  " << pt::keystr(p) << ": " << pt::to_string(leaf) << "\n";
        count += leaf.as_array().size();
    }
    std::cout << "parameters: " << count << " in " << leaves.size() << " arrays\n";
    std::cout << "structure:  " << def.to_string() << "\n\n";

    // An SGD-like step as a pure function over the tree: grads have the same structure.
    const pt::tree grads = pt::tree_map(
        [](const pt::tree& w) { return pt::array::full(w.as_array().shape(), 1.0); }, model);
    const pt::tree stepped = pt::tree_map(
        [](const pt::tree& w, const pt::tree& g) {
            const auto wv = w.as_array().values<float>();
            const auto gv = g.as_array().values<float>();
            return pt::array::build<float>(w.as_array().shape(), [&](std::span<float> out) {
                for (std::size_t i = 0; i < out.size(); ++i)
                    out[i] = wv[i] - 0.01f * gv[i];
            });
        },
        model, grads);
    require(pt::structure(stepped) == pt::structure(model), "a step keeps the structure");
    std::cout << "after one step, layers[0].bias[0] = "
              << stepped["layers"][0]["bias"].as_array().item(0) << "\n";

    // Replace the last layer: the other two layers stay the very same nodes.
    const pt::tree edited =
        pt::tree_at([](pt::selector s) { return s["layers"][2]; }, stepped, linear(256, 100));
    require(pt::same_node(edited["layers"][0], stepped["layers"][0]),
            "untouched layers are shared");
    for (const auto& d : pt::tree_diff(stepped, edited))
        std::cout << "changed " << pt::keystr(d.where) << ": " << d.left << " -> " << d.right
                  << "\n";

    auto [trainable, frozen] = pt::partition(edited, [](const pt::path& p, const pt::tree&) {
        return pt::keystr(p).starts_with(".layers[2]");
    });
    require(pt::tree_equal(pt::combine({trainable, frozen}), edited),
            "partition/combine round trip");
    std::cout << "trainable head only: " << pt::to_string(trainable) << "\n";
    return 0;
}
