// paramtree benchmarks — tree operations per leaf against the copy-the-handles limit.
#include "shapes.hpp"

#include <benchmark/benchmark.h>

#include <functional>

#include <paramtree/ranges.hpp>

namespace pt = paramtree;

namespace {

using bench_shapes::per_leaf;

using maker = pt::tree (*)();

struct shape_info {
    const char* name;
    maker make;
};
const shape_info shapes[] = {{"wide", bench_shapes::wide},
                             {"mlp", bench_shapes::mlp},
                             {"transformer", bench_shapes::transformer},
                             {"deep", bench_shapes::deep}};

// The reference limit: copying N leaf handles from one vector into a reserved vector.
void limit(benchmark::State& state, maker make) {
    const auto src = pt::leaves(make());
    for (auto _ : state) {
        std::vector<pt::tree> dst;
        dst.reserve(src.size());
        for (const auto& l : src)
            dst.push_back(l);
        benchmark::DoNotOptimize(dst.data());
    }
    per_leaf(state, src.size());
}

void flatten(benchmark::State& state, maker make) {
    const auto t = make();
    (void)pt::structure(t); // steady state: the root caches its treedef
    for (auto _ : state) {
        auto flat = pt::flatten(t);
        benchmark::DoNotOptimize(flat.leaves.data());
    }
    per_leaf(state, t.num_leaves());
}

// Flatten that must build the treedef (a never-true is_leaf disables the cache).
void flatten_build(benchmark::State& state, maker make) {
    const auto t = make();
    const pt::leaf_predicate never = [](const pt::tree&) { return false; };
    for (auto _ : state) {
        auto flat = pt::flatten(t, never);
        benchmark::DoNotOptimize(flat.leaves.data());
    }
    per_leaf(state, t.num_leaves());
}

void unflatten(benchmark::State& state, maker make) {
    const auto t = make();
    const auto [leaves, def] = pt::flatten(t);
    for (auto _ : state) {
        auto u = pt::unflatten(def, leaves);
        benchmark::DoNotOptimize(u.identity());
    }
    per_leaf(state, leaves.size());
}

void round_trip(benchmark::State& state, maker make) {
    const auto t = make();
    for (auto _ : state) {
        auto [leaves, def] = pt::flatten(t);
        auto u = pt::unflatten(def, std::move(leaves));
        benchmark::DoNotOptimize(u.identity());
    }
    per_leaf(state, t.num_leaves());
}

void map_identity(benchmark::State& state, maker make) {
    const auto t = make();
    for (auto _ : state) {
        auto u = pt::tree_map([](const pt::tree& l) { return l; }, t);
        benchmark::DoNotOptimize(u.identity());
    }
    per_leaf(state, t.num_leaves());
}

void tree_at_one(benchmark::State& state, maker make) {
    const auto t = make();
    const auto paths = pt::structure(t).leaf_paths();
    const auto& p = paths[paths.size() / 2];
    const pt::tree value = pt::array::ones({4});
    for (auto _ : state) {
        auto u = pt::tree_at(p, t, value);
        benchmark::DoNotOptimize(u.identity());
    }
    per_leaf(state, t.num_leaves());
}

// Visiting every leaf through views::leaves: no handle is copied, so this can beat the limit.
void view_leaves(benchmark::State& state, maker make) {
    const auto t = make();
    for (auto _ : state) {
        std::size_t arrays = 0;
        for (pt::views::leaf_ref l : pt::views::leaves(t))
            arrays += l.is_array() ? 1 : 0;
        benchmark::DoNotOptimize(arrays);
    }
    per_leaf(state, t.num_leaves());
}

// Every leaf with its key path, the path kept incrementally.
void view_leaves_with_path(benchmark::State& state, maker make) {
    const auto t = make();
    for (auto _ : state) {
        std::size_t depth = 0;
        for (auto [where, leaf] : pt::views::leaves_with_path(t))
            depth += where.size();
        benchmark::DoNotOptimize(depth);
    }
    per_leaf(state, t.num_leaves());
}

void flatten_with_path(benchmark::State& state, maker make) {
    const auto t = make();
    for (auto _ : state) {
        auto flat = pt::flatten_with_path(t);
        benchmark::DoNotOptimize(flat.leaves.data());
    }
    per_leaf(state, t.num_leaves());
}

// Equality of two treedefs flattened from the same tree (shared block).
void def_equal_same(benchmark::State& state, maker make) {
    const auto t = make();
    const auto a = pt::structure(t);
    const auto b = pt::structure(t);
    for (auto _ : state)
        benchmark::DoNotOptimize(a == b);
    per_leaf(state, t.num_leaves());
}

// Equality of the treedefs of two separately built, equal trees (full comparison).
void def_equal_distinct(benchmark::State& state, maker make) {
    const auto a = pt::structure(make());
    const auto b = pt::structure(make());
    for (auto _ : state)
        benchmark::DoNotOptimize(a == b);
    per_leaf(state, a.num_leaves());
}

const int registered = [] {
    using fn = void (*)(benchmark::State&, maker);
    const std::pair<const char*, fn> ops[] = {{"limit", limit},
                                              {"flatten", flatten},
                                              {"flatten_build", flatten_build},
                                              {"unflatten", unflatten},
                                              {"round_trip", round_trip},
                                              {"map_identity", map_identity},
                                              {"tree_at", tree_at_one},
                                              {"view_leaves", view_leaves},
                                              {"view_leaves_with_path", view_leaves_with_path},
                                              {"flatten_with_path", flatten_with_path},
                                              {"def_equal_same", def_equal_same},
                                              {"def_equal_distinct", def_equal_distinct}};
    for (const auto& s : shapes)
        for (const auto& [op, f] : ops)
            benchmark::RegisterBenchmark((std::string(op) + "/" + s.name).c_str(), f, s.make);
    return 0;
}();

} // namespace

BENCHMARK_MAIN();
