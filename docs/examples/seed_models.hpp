// paramtree docs — the four seed models as trees, shared by the examples and the graphs.
#pragma once

#include <paramtree/paramtree.hpp>

#include <cstdint>
#include <random>

namespace seed_models {

namespace pt = paramtree;

inline pt::array uniform(pt::shape_type shape, unsigned seed, float scale = 0.1f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-scale, scale);
    return pt::array::build<float>(std::move(shape), [&](std::span<float> out) {
        for (auto& x : out)
            x = dist(gen);
    });
}

/// Equinox-style Linear: weight [out, in], bias [out].
inline pt::tree linear(std::size_t in, std::size_t out, unsigned seed) {
    return pt::record("Linear",
                      {{"weight", uniform({out, in}, seed)}, {"bias", uniform({out}, seed + 1)}},
                      {{"in_features", static_cast<std::int64_t>(in)},
                       {"out_features", static_cast<std::int64_t>(out)}});
}

/// Seed 001: Equinox's language model, embedding [V, D] tied to the output linear's weight.
inline pt::tree tied_language_model(std::size_t vocab, std::size_t dim) {
    const auto embedding = pt::record("Embedding", {{"weight", uniform({vocab, dim}, 1)}},
                                      {{"num_embeddings", static_cast<std::int64_t>(vocab)}});
    return pt::share(
        pt::tuple({embedding, linear(dim, vocab, 2)}),
        [](pt::selector s) { return s[1]["weight"]; },
        [](pt::selector s) { return s[0]["weight"]; });
}

/// Seed 000: Flax SharedDense: ONE Dense (kernel [in, out], Flax layout) under params/shared.
inline pt::tree shared_dense_params(std::size_t hidden) {
    const auto dense =
        pt::dict({{"kernel", uniform({hidden, hidden}, 3)}, {"bias", pt::array::zeros({hidden})}});
    return pt::dict({{"params", pt::dict({{"shared", dense}})}});
}

/// Seed 002: PyTorch linear1 / linear2 with linear2's weight and bias tied to linear1's.
inline pt::tree pytorch_tied(std::size_t hidden, std::size_t out) {
    const auto model = pt::record(
        "Model", {{"linear1", linear(hidden, out, 5)}, {"linear2", linear(hidden, out, 7)}});
    return pt::tie(model, {pt::parse_path(".linear2.weight"), pt::parse_path(".linear2.bias")},
                   {pt::parse_path(".linear1.weight"), pt::parse_path(".linear1.bias")});
}

/// Seed 003: Inox's WeightSharingMLP: l2 is l1, l4.weight is l3.weight.
inline pt::tree weight_sharing_mlp() {
    const auto l1 = pt::reference("l1", linear(64, 64, 11));
    const auto l3_weight = pt::reference("l3.weight", uniform({64, 64}, 13));
    auto layer = [](const pt::tree& weight, unsigned seed) {
        return pt::record("Linear", {{"weight", weight}, {"bias", uniform({64}, seed)}},
                          {{"in_features", 64}, {"out_features", 64}});
    };
    return pt::scope(pt::record(
        "WeightSharingMLP",
        {{"l1", l1}, {"l2", l1}, {"l3", layer(l3_weight, 14)}, {"l4", layer(l3_weight, 15)}}));
}

} // namespace seed_models
