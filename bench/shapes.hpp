// paramtree benchmarks — the tree shapes every benchmark runs on, and the per-leaf counter.
#pragma once

#include <paramtree/paramtree.hpp>

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace bench_shapes {

namespace pt = paramtree;

inline pt::tree leaf() {
    return pt::array::zeros({4});
}

inline pt::tree linear() {
    return pt::record("Linear", {{"weight", leaf()}, {"bias", leaf()}});
}

/// One dict of 100,000 leaves.
inline pt::tree wide() {
    std::vector<std::pair<std::string, pt::tree>> items;
    items.reserve(100000);
    for (int i = 0; i < 100000; ++i)
        items.emplace_back("p" + std::to_string(i), leaf());
    return pt::dict(std::move(items));
}

/// 1,000 Linear records of weight + bias.
inline pt::tree mlp() {
    std::vector<pt::tree> layers;
    for (int i = 0; i < 1000; ++i)
        layers.push_back(linear());
    return pt::record("MLP", {{"layers", pt::list(layers)}});
}

/// 48 blocks: attention q/k/v/o + mlp fc1/fc2 + two layer norms, each weight + bias.
inline pt::tree transformer() {
    std::vector<pt::tree> blocks;
    for (int i = 0; i < 48; ++i) {
        const auto attn = pt::record(
            "Attention", {{"q", linear()}, {"k", linear()}, {"v", linear()}, {"o", linear()}},
            {{"heads", 8}});
        const auto mlp = pt::record("FeedForward", {{"fc1", linear()}, {"fc2", linear()}});
        const auto norm = [] {
            return pt::record("LayerNorm", {{"weight", leaf()}, {"bias", leaf()}}, {{"eps", 1e-5}});
        };
        blocks.push_back(
            pt::record("Block", {{"ln1", norm()}, {"attn", attn}, {"ln2", norm()}, {"mlp", mlp}}));
    }
    return pt::record("Transformer", {{"blocks", pt::list(blocks)}});
}

/// A chain of 1,000 nested lists, one leaf at each level.
inline pt::tree deep() {
    pt::tree t = leaf();
    for (int i = 0; i < 1000; ++i)
        t = pt::list({leaf(), t});
    return t;
}

/// Reports `leaves` and the time per leaf (a rate, inverted: seconds per leaf).
inline void per_leaf(benchmark::State& state, std::size_t leaves) {
    state.counters["leaves"] = static_cast<double>(leaves);
    state.counters["ns_per_leaf"] =
        benchmark::Counter(static_cast<double>(leaves) * static_cast<double>(state.iterations()),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

/// A tied autoencoder: four encoder weights [1024, 512], each decoder weight the transpose of
/// its encoder's (four transposed ties, 8 MiB of parameters).
inline pt::tree tied_autoencoder() {
    std::vector<pt::tree> enc, dec;
    for (int i = 0; i < 4; ++i) {
        enc.push_back(pt::array::ones({1024, 512}));
        dec.push_back(pt::array::ones({512, 1024}));
    }
    std::vector<pt::path> where;
    std::vector<pt::source> get;
    for (std::size_t i = 0; i < 4; ++i) {
        where.push_back(pt::parse_path(".dec[" + std::to_string(i) + "]"));
        get.push_back(pt::source(pt::parse_path(".enc[" + std::to_string(i) + "]"),
                                 {pt::transform::transpose()}));
    }
    return pt::share(pt::dict({{"enc", pt::list(enc)}, {"dec", pt::list(dec)}}), where, get);
}

} // namespace bench_shapes
