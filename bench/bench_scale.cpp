// paramtree — how checkpoint and tie operations scale in the number of tensors and tied
// positions (issue 31 §4): save, load_tree, load(file, like), load_arrays, ties(), contract and
// share at 1k, 10k, 100k and 1M, each the median of three runs (one at 1M), written as JSON for
// scripts/lib/bench_report.py. Plain timing: each operation is seconds long at the top size.
// Usage: bench_scale OUT.json [DIR for the files]
#include <paramtree/checkpoint.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace pt = paramtree;

namespace {

double seconds_of(const std::function<void()>& f, int runs) {
    std::vector<double> s;
    for (int r = 0; r < runs; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: bench_scale OUT.json [DIR]\n";
        return 2;
    }
    const std::filesystem::path dir =
        argc > 2 ? std::filesystem::path(argv[2]) : std::filesystem::temp_directory_path();
    const auto ties_file = dir / "bench_scale_ties.safetensors";
    const auto plain_file = dir / "bench_scale_tensors.safetensors";
    std::ofstream out(argv[1]);
    out << "[\n";
    bool first = true;
    const auto row = [&](const char* kind, const char* op, std::size_t n, double s) {
        out << (first ? "" : ",\n")
            << fmt::format(R"({{"kind": "{}", "op": "{}", "n": {}, "seconds": {}}})", kind, op, n,
                           s);
        first = false;
        std::cerr << fmt::format("{:>8} {:<12} n={:<8} {:.3f} s  {:.2f} us each\n", kind, op, n, s,
                                 1e6 * s / double(n));
    };
    for (const std::size_t n :
         {std::size_t{1000}, std::size_t{10000}, std::size_t{100000}, std::size_t{1000000}}) {
        const int runs = n >= 1000000 ? 1 : 3;
        // n positions tied to one source (ALBERT-style sharing, scanned blocks).
        std::vector<pt::tree> items(n + 1, pt::tree(pt::array::ones({2})));
        std::vector<pt::path> where;
        where.reserve(n);
        for (std::size_t i = 1; i <= n; ++i)
            where.push_back(pt::path{pt::index_key{i}});
        const pt::tree untied = pt::list(items);
        pt::tree t;
        row("ties", "share", n,
            seconds_of([&] { t = pt::share(untied, where, pt::path{pt::index_key{0}}); }, runs));
        row("ties", "save", n, seconds_of([&] { pt::save(ties_file, t); }, runs));
        row("ties", "load_tree", n, seconds_of([&] { (void)pt::load_tree(ties_file); }, runs));
        row("ties", "load_like", n, seconds_of([&] { (void)pt::load(ties_file, t); }, runs));
        row("ties", "ties()", n, seconds_of([&] { (void)pt::ties(t); }, runs));
        const pt::tree expanded = pt::expand(t);
        row("ties", "contract", n, seconds_of([&] { (void)pt::contract(t, expanded); }, runs));
        // n distinct tensors.
        std::vector<std::pair<std::string, pt::tree>> named;
        named.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            named.emplace_back(fmt::format("t{}", i), pt::tree(pt::array::ones({1})));
        const pt::tree plain = pt::dict(std::move(named));
        try {
            row("tensors", "save", n, seconds_of([&] { pt::save(plain_file, plain); }, runs));
        } catch (const pt::format_error& e) {
            // 1M tensors need a header past the 100 MB loaders accept (about 121 bytes each):
            // save refuses before writing, which the report says.
            row("tensors", "save refused", n, 0.0);
            std::cerr << e.what() << "\n";
            continue;
        }
        row("tensors", "load_arrays", n,
            seconds_of([&] { (void)pt::load_arrays(plain_file); }, runs));
        row("tensors", "load_tree", n, seconds_of([&] { (void)pt::load_tree(plain_file); }, runs));
        row("tensors", "load_like", n,
            seconds_of([&] { (void)pt::load(plain_file, plain); }, runs));
    }
    out << "\n]\n";
    std::filesystem::remove(ties_file);
    std::filesystem::remove(plain_file);
    return 0;
}
