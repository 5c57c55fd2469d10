// paramtree — the C++ side of tests/checkpoint_interop.py: reads the files the script writes
// and writes the files the script reads, checking every value against the same formulas.
//   checkpoint_interop read-python FILE | write FILE | read-torch FILE | write-torch FILE
#include <paramtree/paramtree.hpp>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>

namespace pt = paramtree;

namespace {
constexpr std::size_t vocab = 7, dim = 3;

/// The arrays both sides know: name, values.
pt::tree known() {
    return pt::dict(
        {{"f32", pt::array{{0.f, .5f, 1.f}, {1.5f, 2.f, 2.5f}}},
         {"f64", pt::array{1e-300, -2.5, std::numbers::pi}},
         {"i32", pt::array{-3, 7}},
         {"i64", pt::array::from_vector<std::int64_t>({2}, {std::int64_t{1} << 40, -1})},
         {"bool", pt::array::from_vector<bool>({3}, {true, false, true})},
         {"scalar", pt::array::scalar(4.25f)},
         {"empty", pt::array::zeros({0, 3})}});
}

/// A tied language model's weights: embed.weight[i, j] = (i * dim + j) / 100, head.bias[i] = -i.
pt::tree tied_model() {
    const pt::array e = pt::array::build<float>({vocab, dim}, [](std::span<float> w) {
        for (std::size_t i = 0; i < w.size(); ++i)
            w[i] = static_cast<float>(i) / 100.f;
    });
    const pt::array b = pt::array::build<float>({vocab}, [](std::span<float> w) {
        for (std::size_t i = 0; i < w.size(); ++i)
            w[i] = -static_cast<float>(i);
    });
    const pt::tree m =
        pt::record("LM", {{"embed", pt::record("Embedding", {{"weight", e}})},
                          {"head", pt::record("Linear", {{"weight", e}, {"bias", b}})}});
    return pt::share(m, pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
}

int fail(const std::string& what) {
    std::fprintf(stderr, "checkpoint_interop: %s\n", what.c_str());
    return 1;
}
} // namespace

int main(int argc, char** argv) {
    if (argc != 3) return fail("usage: checkpoint_interop MODE FILE");
    const std::string mode = argv[1], file = argv[2];
    try {
        if (mode == "read-python") {
            const auto arrays = pt::load_arrays(file);
            const pt::tree want = known();
            for (const auto& key : want.keys()) {
                if (!arrays.contains(key)) return fail("missing " + key);
                if (!pt::array_equal(arrays.at(key), want[key].as_array()))
                    return fail("wrong values in " + key + ": " + arrays.at(key).describe());
            }
            if (arrays.size() != want.keys().size()) return fail("extra tensors");
            // Loading against a target works on a file paramtree did not write.
            (void)pt::load(file, want);
        } else if (mode == "write") {
            pt::save(file, known());
        } else if (mode == "read-torch") {
            const pt::tree like = tied_model();
            const pt::tree loaded = pt::load(file, like);
            const pt::tree full = pt::expand(loaded);
            if (!pt::same_storage(full["embed"]["weight"].as_array(),
                                  full["head"]["weight"].as_array()))
                return fail("the tie was not restored");
            if (!pt::tree_equal(loaded, like)) return fail("values differ from the formula");
        } else if (mode == "write-torch") {
            pt::save(file, tied_model());
        } else {
            return fail("unknown mode " + mode);
        }
    } catch (const pt::error& e) {
        return fail(e.what());
    }
    std::printf("checkpoint_interop %s: ok\n", mode.c_str());
    return 0;
}
