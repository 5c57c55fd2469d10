// paramtree benchmarks — checkpoint save and load of a 256 MiB tree against a plain copy of
// the same bytes (read the file, write a new one, fsync: what `cp` + sync does), in one run.
#include <paramtree/paramtree.hpp>

#include "shapes.hpp"

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <vector>

namespace {

namespace pt = paramtree;
namespace fs = std::filesystem;

constexpr std::size_t arrays = 64, per_array = 1 << 20; // 64 x 4 MiB float32 = 256 MiB

const fs::path& dir() {
    static const fs::path d = [] {
        fs::path p = fs::current_path() / "bench-checkpoints";
        fs::create_directories(p);
        return p;
    }();
    return d;
}

const pt::tree& model() {
    static const pt::tree t = [] {
        std::vector<pt::tree> layers;
        for (std::size_t i = 0; i < arrays; ++i)
            layers.push_back(pt::record(
                "Layer", {{"weight", pt::random::normal(pt::random::make_key(i), {per_array})}}));
        return pt::record("Model", {{"layers", pt::list(layers)}});
    }();
    return t;
}

std::size_t total_bytes() {
    return arrays * per_array * sizeof(float);
}

/// Reads every byte (8 at a time), as using the loaded arrays would.
std::uint64_t checksum(const std::byte* p, std::size_t n) {
    std::uint64_t s = 0;
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        s += w;
    }
    return s;
}

void BM_copy(benchmark::State& state) {
    const fs::path src = dir() / "source.safetensors";
    pt::save(src, model());
    const auto size = fs::file_size(src);
    std::vector<char> buffer(size);
    for (auto _ : state) {
        const int in = ::open(src.c_str(), O_RDONLY);
        std::size_t got = 0;
        while (got < size) {
            const auto r = ::read(in, buffer.data() + got, size - got);
            if (r <= 0) break;
            got += static_cast<std::size_t>(r);
        }
        ::close(in);
        const int out = ::open((dir() / "copy.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::size_t put = 0;
        while (put < size) {
            const auto w = ::write(out, buffer.data() + put, size - put);
            if (w <= 0) break;
            put += static_cast<std::size_t>(w);
        }
        ::fsync(out);
        ::close(out);
        benchmark::DoNotOptimize(got + put);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_copy)
    ->Name("checkpoint/cp_read_write_fsync")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_save(benchmark::State& state) {
    for (auto _ : state)
        pt::save(dir() / "saved.safetensors", model());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * total_bytes()));
}
BENCHMARK(BM_save)->Name("checkpoint/save")->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_load(benchmark::State& state, pt::load_memory memory) {
    const fs::path file = dir() / "load.safetensors";
    pt::save(file, model());
    for (auto _ : state) {
        const pt::tree t = pt::load(file, model(), {.memory = memory});
        std::uint64_t sum = 0;
        for (const auto& leaf : pt::leaves(t))
            sum += checksum(leaf.as_array().bytes(), leaf.as_array().nbytes());
        benchmark::DoNotOptimize(sum);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * total_bytes()));
}
BENCHMARK_CAPTURE(BM_load, copy, pt::load_memory::copy)
    ->Name("checkpoint/load_and_read")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_load, map, pt::load_memory::map)
    ->Name("checkpoint/load_map_and_read")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

} // namespace

// load_tree of the tied autoencoder (bench_shapes::tied_autoencoder, 8 MiB on disk): the ties
// are restored from the file's structure.
void BM_load_tree_tied(benchmark::State& state) {
    const fs::path file = dir() / "tied.safetensors";
    pt::save(file, bench_shapes::tied_autoencoder());
    for (auto _ : state) {
        const pt::tree t = pt::load_tree(file);
        benchmark::DoNotOptimize(t.identity());
    }
    fs::remove(file);
}
BENCHMARK(BM_load_tree_tied)->Name("checkpoint/load_tree_tied")->Unit(benchmark::kMicrosecond);

namespace {
/// The 48-block transformer (bench_shapes::transformer, 1,248 small leaves) with blocks 1-47's
/// attention tied to block 0's: 47 ties, 16 KiB of arrays. Saving it costs the header (the
/// walk over the tree, the structure and the ties), not the bytes.
pt::tree tied_transformer() {
    std::vector<pt::path> where;
    for (std::size_t i = 1; i < 48; ++i)
        where.push_back(pt::parse_path(".blocks[" + std::to_string(i) + "].attn"));
    return pt::share(bench_shapes::transformer(), where, pt::parse_path(".blocks[0].attn"));
}

/// tmpfs where there is one: its fsync is free, so the time is paramtree's own.
fs::path memory_dir() {
    const fs::path shm = "/dev/shm";
    return fs::is_directory(shm) ? shm : dir();
}
} // namespace

void BM_save_tied_structure(benchmark::State& state) {
    const pt::tree t = tied_transformer();
    const fs::path file = memory_dir() / "paramtree-bench-structure.safetensors";
    for (auto _ : state)
        pt::save(file, t);
    fs::remove(file);
}
BENCHMARK(BM_save_tied_structure)
    ->Name("checkpoint/save_tied_structure")
    ->Unit(benchmark::kMicrosecond);

void BM_load_tree_tied_structure(benchmark::State& state) {
    const fs::path file = memory_dir() / "paramtree-bench-structure-load.safetensors";
    pt::save(file, tied_transformer());
    for (auto _ : state) {
        const pt::tree t = pt::load_tree(file);
        benchmark::DoNotOptimize(t.identity());
    }
    fs::remove(file);
}
BENCHMARK(BM_load_tree_tied_structure)
    ->Name("checkpoint/load_tree_tied_structure")
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
