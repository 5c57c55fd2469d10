// paramtree docs — writes the Graphviz DOT of each seed model into the folder given as the
// first argument (scripts/render-graphs turns them into the SVGs shown in docs/sharing.md).
#include "seed_models.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
    namespace pt = paramtree;
    const std::filesystem::path out = argc > 1 ? argv[1] : ".";
    std::filesystem::create_directories(out);
    const std::pair<const char*, pt::tree> models[] = {
        {"tied_language_model", seed_models::tied_language_model(16, 8)},
        {"shared_dense", seed_models::shared_dense_params(8)},
        {"pytorch_tied", seed_models::pytorch_tied(8, 8)},
        {"weight_sharing_mlp", seed_models::weight_sharing_mlp()},
    };
    for (const auto& [name, model] : models) {
        const auto dot = pt::to_dot(model, name);
        if (dot.find("digraph") != 0) return 1;
        std::ofstream(out / (std::string(name) + ".dot")) << dot;
        std::cout << "wrote " << (out / (std::string(name) + ".dot")).string() << "\n";
    }
    return 0;
}
