// paramtree benchmarks — the cost of sharing: expand (zero-copy), flatten/unflatten with ties,
// share_aliases on a 100,000-leaf tree.
#include "shapes.hpp"

#include <benchmark/benchmark.h>

namespace pt = paramtree;

namespace {

using bench_shapes::per_leaf;

pt::tree tied_pair(std::size_t n) {
    const auto t = pt::tuple({pt::record("Embedding", {{"weight", pt::array::zeros({n, n})}}),
                              pt::record("Linear", {{"weight", pt::array::zeros({n, n})},
                                                    {"bias", pt::array::zeros({n})}})});
    return pt::share(t, pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
}

void expand_pair(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const auto t = tied_pair(n);
    for (auto _ : state) {
        auto full = pt::expand(t);
        benchmark::DoNotOptimize(full.identity());
    }
    state.counters["array_bytes"] = static_cast<double>(n * n * 4);
}
BENCHMARK(expand_pair)->Arg(1)->Arg(4096);

// The mlp shape with every odd layer's weight tied to the even layer before it (500 ties).
pt::tree tied_mlp() {
    const auto t = bench_shapes::mlp();
    std::vector<pt::path> where, get;
    for (std::size_t i = 1; i < 1000; i += 2) {
        where.push_back(pt::parse_path(".layers[" + std::to_string(i) + "].weight"));
        get.push_back(pt::parse_path(".layers[" + std::to_string(i - 1) + "].weight"));
    }
    return pt::share(t, where, get);
}

// share itself: the 500 ties of tied_mlp made from the plain mlp (paths given as text-built
// path objects, as a user writes them: share canonicalises, checks and prunes).
void share_mlp(benchmark::State& state) {
    const auto t = bench_shapes::mlp();
    std::vector<pt::path> where, get;
    for (std::size_t i = 1; i < 1000; i += 2) {
        where.push_back(pt::parse_path(".layers[" + std::to_string(i) + "].weight"));
        get.push_back(pt::parse_path(".layers[" + std::to_string(i - 1) + "].weight"));
    }
    for (auto _ : state) {
        auto s = pt::share(t, where, get);
        benchmark::DoNotOptimize(s.identity());
    }
    per_leaf(state, t.num_leaves());
}
BENCHMARK(share_mlp)->Unit(benchmark::kMicrosecond);

void flatten_mlp(benchmark::State& state, bool tied) {
    const auto t = tied ? tied_mlp() : bench_shapes::mlp();
    (void)pt::structure(t);
    for (auto _ : state) {
        auto flat = pt::flatten(t);
        benchmark::DoNotOptimize(flat.leaves.data());
    }
    per_leaf(state, t.num_leaves());
}
void unflatten_mlp(benchmark::State& state, bool tied) {
    const auto t = tied ? tied_mlp() : bench_shapes::mlp();
    const auto [leaves, def] = pt::flatten(t);
    for (auto _ : state) {
        auto u = pt::unflatten(def, leaves);
        benchmark::DoNotOptimize(u.identity());
    }
    per_leaf(state, leaves.size());
}
void expand_mlp(benchmark::State& state) {
    const auto t = tied_mlp();
    for (auto _ : state) {
        auto full = pt::expand(t);
        benchmark::DoNotOptimize(full.identity());
    }
    per_leaf(state, t.num_leaves());
}
// contract(t, g) of the tied autoencoder: sums a gradient of expand(t)'s structure back onto t.
void contract_autoencoder(benchmark::State& state) {
    const auto t = bench_shapes::tied_autoencoder();
    const auto grads = pt::expand(t);
    for (auto _ : state) {
        auto c = pt::contract(t, grads);
        benchmark::DoNotOptimize(c.identity());
    }
}
BENCHMARK(contract_autoencoder)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(flatten_mlp, untied, false);
BENCHMARK_CAPTURE(flatten_mlp, tied, true);
BENCHMARK_CAPTURE(unflatten_mlp, untied, false);
BENCHMARK_CAPTURE(unflatten_mlp, tied, true);
BENCHMARK(expand_mlp);

// 100,000 leaves in one dict, every second one aliasing the one before.
pt::tree aliased_wide() {
    std::vector<std::pair<std::string, pt::tree>> items;
    pt::array last;
    for (int i = 0; i < 100000; ++i) {
        if (i % 2 == 0) last = pt::array::zeros({4});
        items.emplace_back("p" + std::to_string(100000 + i), last);
    }
    return pt::dict(std::move(items));
}
void share_aliases_wide(benchmark::State& state) {
    const auto t = aliased_wide();
    for (auto _ : state) {
        auto s = pt::share_aliases(t);
        benchmark::DoNotOptimize(s.identity());
    }
    per_leaf(state, t.num_leaves());
}
void find_aliases_wide(benchmark::State& state) {
    const auto t = aliased_wide();
    for (auto _ : state) {
        auto g = pt::find_aliases(t);
        benchmark::DoNotOptimize(g.data());
    }
    per_leaf(state, t.num_leaves());
}
BENCHMARK(find_aliases_wide)->Unit(benchmark::kMillisecond);
BENCHMARK(share_aliases_wide)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
