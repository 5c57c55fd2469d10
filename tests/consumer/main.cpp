// A program built against the *installed* paramtree (tests/install_consumer.sh builds it three
// ways: plain pkg-config, a meson project, a CMake project). It trains a tied model for one
// step and round-trips it through a checkpoint: ties, gradients, an optimizer, checkpoints.
#include <paramtree/paramtree.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

int main() {
    namespace pt = paramtree;
    namespace opt = pt::optim;
    const auto ks = pt::random::split(pt::random::make_key(0), 2);
    const pt::tree model =
        pt::share(pt::record("LM", {{"embed", pt::nn::embedding(ks[0], 8, 4)},
                                    {"head", pt::nn::linear(ks[1], 4, 8)}}),
                  pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
    const pt::array tokens = pt::array::from_vector<std::int64_t>({3}, {1, 5, 2});
    auto loss = [&](const pt::tree& m) {
        const pt::array h = pt::nn::apply(m["embed"], tokens);
        return pt::cross_entropy(pt::nn::apply(m["head"], h), tokens);
    };
    auto [value, grads] = pt::value_and_grad(loss)(model);
    const auto adam = opt::adam(1e-2);
    auto [updates, state] = adam.update(grads, adam.init(model), model);
    const pt::tree stepped = opt::apply_updates(model, updates);
    const auto file = std::filesystem::temp_directory_path() /
                      ("paramtree-consumer-" + std::to_string(::getpid()) + ".safetensors");
    pt::save(file, stepped);
    const pt::tree back = pt::load(file, stepped);
    std::filesystem::remove(file);
    const bool ok = pt::structure(grads) == pt::structure(model) && stepped.num_leaves() == 2 &&
                    pt::tree_equal(back, stepped) &&
                    loss(pt::expand(stepped)).item() < value.item();
    std::cout << (ok ? "installed paramtree works: " : "installed paramtree is broken: ")
              << pt::to_string(pt::backend_info()) << "\n";
    return ok ? 0 : 1;
}
