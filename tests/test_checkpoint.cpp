// Tests for <paramtree/checkpoint.hpp>: tie-preserving save/load, validation against a
// target, PyTorch-style files, atomic saves under an injected failure, the corpus of
// malformed files, and .npy.
#include <catch2/catch.hpp>

#include <paramtree/checkpoint.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/print.hpp>
#include <paramtree/reference.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace pt = paramtree;
namespace fs = std::filesystem;
namespace rnd = paramtree::random;

namespace {

/// A fresh directory for one test case, removed afterwards.
struct scratch {
    fs::path dir;
    scratch() {
        dir = fs::temp_directory_path() /
              ("pt-ckpt-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~scratch() { fs::remove_all(dir); }
    static int& counter() {
        static int n = 0;
        return n;
    }
    [[nodiscard]] fs::path operator/(const std::string& name) const { return dir / name; }
};

std::string read_text(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::byte> bytes_of(const std::string& s) {
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
}

/// A safetensors file in memory: `header` JSON text and raw data.
std::vector<std::byte> safetensors(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return bytes_of(out + header + data);
}

std::string f32_bytes(std::initializer_list<float> v) {
    std::string s(v.size() * 4, '\0');
    std::memcpy(s.data(), std::data(v), s.size());
    return s;
}

pt::tree tied_lm() {
    const auto ks = rnd::split(rnd::make_key(0), 2);
    const pt::tree m = pt::record(
        "LM", {{"embed", pt::nn::embedding(ks[0], 5, 3)}, {"head", pt::nn::linear(ks[1], 3, 5)}},
        {{"vocab", 5}, {"temperature", 0.7}});
    return pt::share(m, pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
}

} // namespace

TEST_CASE("checkpoint: a tied model round-trips; the tied value is stored once", "[checkpoint]") {
    scratch s;
    const pt::tree lm = tied_lm();
    pt::save(s / "lm.safetensors", lm);
    const auto arrays = pt::load_arrays(s / "lm.safetensors");
    CHECK(arrays.size() == 2); // embed.weight, head.bias — head.weight is the tie
    CHECK(arrays.contains("embed.weight"));
    CHECK(arrays.contains("head.bias"));
    CHECK(!arrays.contains("head.weight"));
    // The header records the tie for other tools.
    const std::string text = read_text(s / "lm.safetensors");
    CHECK(text.find(R"(\"head.weight\":{\"source\":\"embed.weight\")") != std::string::npos);

    const pt::tree back = pt::load(s / "lm.safetensors", lm);
    CHECK(pt::tree_equal(back, lm));
    CHECK(pt::structure(back) == pt::structure(lm));
    const pt::tree full = pt::expand(back);
    CHECK(pt::same_storage(full["embed"]["weight"].as_array(), full["head"]["weight"].as_array()));

    // Without model code: the tree and its ties from the header alone.
    const pt::tree rebuilt = pt::load_tree(s / "lm.safetensors");
    CHECK(pt::tree_equal(rebuilt, lm));
    CHECK(pt::structure(rebuilt) == pt::structure(lm));
    CHECK(rebuilt.child(0).static_field("temperature") == pt::static_value(0.7));
}

TEST_CASE("checkpoint: transforming ties, Inox tags, every leaf kind, dict order", "[checkpoint]") {
    scratch s;
    const pt::tree ae =
        pt::share(pt::record("AE", {{"enc", pt::nn::linear(rnd::make_key(1), 4, 2)},
                                    {"dec", pt::nn::linear(rnd::make_key(2), 2, 4)}}),
                  pt::parse_path(".dec.weight"),
                  pt::source(pt::parse_path(".enc.weight"),
                             {pt::transform::transpose(), pt::transform::scale(0.5)}));
    const pt::tree inox =
        pt::scope(pt::record("MLP", {{"a", pt::reference("w", pt::array::ones({2, 2}))},
                                     {"b", pt::reference("w", pt::array::ones({2, 2}))}}));
    const pt::tree misc = pt::dict(
        {{"z", pt::list({1, 2.5, true, "text", pt::tree{}})},
         {"a", pt::tuple({pt::array{1, 2}, pt::array::from_vector<bool>({2}, {true, false})})},
         {"nan", std::numeric_limits<double>::quiet_NaN()},
         {"f64", pt::array{{1.0, 2.0}}}});
    for (const auto& t : {ae, inox, misc}) {
        pt::save(s / "t.safetensors", t);
        const pt::tree back = pt::load_tree(s / "t.safetensors");
        CHECK(pt::structure(back) == pt::structure(t)); // ties, tags, statics, dict order
        CHECK(pt::to_string(back) == pt::to_string(t));
    }
    pt::save(s / "ae.safetensors", ae);
    const pt::tree ae_back = pt::load_tree(s / "ae.safetensors");
    CHECK(pt::tree_equal(pt::expand(ae_back), pt::expand(ae))); // transposed, scaled values
    CHECK(ae_back.num_leaves() == 3);
    pt::save(s / "inox.safetensors", inox);
    CHECK(pt::tree_equal(pt::load_tree(s / "inox.safetensors"), inox));
    pt::save(s / "m.safetensors", misc);
    const pt::tree m = pt::load_tree(s / "m.safetensors");
    CHECK(m.keys() == misc.keys()); // insertion order kept
    CHECK(std::isnan(m["nan"].as<double>()));
    CHECK(m["z"][3].as<std::string>() == "text");
    CHECK(pt::array_equal(m["a"][1].as_array(), misc["a"][1].as_array()));
    CHECK(pt::array_equal(m["f64"].as_array(), misc["f64"].as_array()));
}

TEST_CASE("checkpoint: load against a target reports every mismatch together",
          "[checkpoint][errors]") {
    scratch s;
    const pt::tree saved = pt::dict({{"w", pt::array::zeros({2, 3})},
                                     {"b", pt::array::zeros({3})},
                                     {"extra", pt::array::zeros({1})}});
    pt::save(s / "m.safetensors", saved);
    const pt::tree like = pt::dict({{"w", pt::array::zeros({3, 2})},                  // shape
                                    {"b", pt::array::zeros({3}, pt::dtype::float64)}, // dtype
                                    {"missing", pt::array::zeros({1})}});
    try {
        (void)pt::load(s / "m.safetensors", like);
        FAIL("expected format_error");
    } catch (const pt::format_error& e) {
        const std::string what = e.what();
        CHECK(what.find("4 problems") != std::string::npos);
        CHECK(what.find("w: expected f32[3,2], found f32[2,3]") != std::string::npos);
        CHECK(what.find("b: expected f64[3], found f32[3]") != std::string::npos);
        CHECK(what.find("missing: missing (expected f32[1])") != std::string::npos);
        CHECK(what.find("extra: f32[1] in the file has no place in the target") !=
              std::string::npos);
    }
    // Lenient: extra tensors are ignored.
    const pt::tree subset = pt::dict({{"w", pt::array::ones({2, 3})}});
    CHECK(pt::load(s / "m.safetensors", subset, {.strict = false})["w"].as_array().item() == 0);
    CHECK_THROWS_AS(pt::load(s / "m.safetensors", subset), pt::format_error);
}

TEST_CASE("checkpoint: ties in the file and in the target must agree",
          "[checkpoint][sharing][errors]") {
    scratch s;
    const pt::tree lm = tied_lm();
    const pt::tree untied = pt::expand(lm);
    pt::save(s / "tied.safetensors", lm);
    try {
        (void)pt::load(s / "tied.safetensors", untied);
        FAIL("expected format_error");
    } catch (const pt::format_error& e) {
        CHECK(std::string(e.what()).find(
                  "head.weight: the file ties it to embed.weight, the target has no such tie") !=
              std::string::npos);
    }
    // A paramtree file without the tie, loaded into a tied target: both copies present (the
    // PyTorch state_dict form) but the target says they are one.
    pt::save(s / "untied.safetensors", untied);
    try {
        (void)pt::load(s / "untied.safetensors", lm);
        FAIL("expected format_error");
    } catch (const pt::format_error& e) {
        CHECK(std::string(e.what()).find(
                  "the target ties it to embed.weight, the file has no such tie") !=
              std::string::npos);
    }
}

TEST_CASE("checkpoint: PyTorch-style files hold a tie once or under both names",
          "[checkpoint][sharing]") {
    const pt::tree like =
        pt::share(pt::record("M", {{"embed", pt::record("E", {{"weight", pt::array::zeros({2})}})},
                                   {"head", pt::record("H", {{"weight", pt::array::zeros({2})}})}}),
                  pt::parse_path(".head.weight"), pt::parse_path(".embed.weight"));
    const std::string one = R"({"embed.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    // Dropped form (safetensors' save_model keeps one name):
    const pt::tree a = pt::load(safetensors(one, f32_bytes({1.5f, 2.5f})), like);
    CHECK(pt::expand(a)["head"]["weight"].as_array().to_doubles() == std::vector<double>{1.5, 2.5});
    // Both names with equal copies (a state_dict written tensor by tensor):
    const std::string both = R"({"embed.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("head.weight":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
    const pt::tree b = pt::load(safetensors(both, f32_bytes({1.5f, 2.5f, 1.5f, 2.5f})), like);
    CHECK(pt::same_storage(pt::expand(b)["embed"]["weight"].as_array(),
                           pt::expand(b)["head"]["weight"].as_array()));
    // ... and with copies that differ: a clear error, not a silent choice.
    try {
        (void)pt::load(safetensors(both, f32_bytes({1.5f, 2.5f, 1.5f, 9.0f})), like);
        FAIL("expected format_error");
    } catch (const pt::format_error& e) {
        CHECK(std::string(e.what()).find(
                  "head.weight: holds a copy of the tied embed.weight that differs") !=
              std::string::npos);
    }
}

TEST_CASE("checkpoint: a failure mid-save leaves the old file intact", "[checkpoint]") {
    scratch s;
    const fs::path file = s / "model.safetensors";
    const pt::tree small = pt::dict({{"w", pt::array::full({4}, 3.0)}});
    pt::save(file, small);
    const std::string before = read_text(file);
    // Inject a failure: the process may write at most 64 KiB per file, the new tree is 4 MiB.
    const pt::tree big = pt::dict({{"w", pt::array::zeros({1024, 1024})}});
    struct rlimit old {};
    ::getrlimit(RLIMIT_FSIZE, &old);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit low = old;
    low.rlim_cur = 64 * 1024;
    ::setrlimit(RLIMIT_FSIZE, &low);
    bool threw_io_error = false;
    try {
        pt::save(file, big);
    } catch (const pt::io_error& e) {
        threw_io_error = std::string(e.what()).find("write") != std::string::npos;
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    CHECK(threw_io_error);
    CHECK(read_text(file) == before);
    CHECK(pt::tree_equal(pt::load(file, small), small));
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(s.dir))
        ++entries;
    CHECK(entries == 1); // no temporary file left behind
    // Unwritable places are io_errors naming the file.
    CHECK_THROWS_AS(pt::save(s / "no-such-dir" / "m.safetensors", small), pt::io_error);
    CHECK_THROWS_AS(pt::load_arrays(s / "absent.safetensors"), pt::io_error);
}

TEST_CASE("checkpoint: what cannot be saved is refused before writing", "[checkpoint][errors]") {
    scratch s;
    const pt::tree base = pt::dict({{"a", pt::array::ones({2})}, {"b", pt::array::ones({2})}});
    const pt::tree callable =
        pt::share(base, pt::parse_path("['b']"),
                  pt::getter([](const pt::tree& t) { return t["a"]; }, "my_get"));
    CHECK_THROWS_AS(pt::save(s / "c.safetensors", callable), pt::sharing_error);
    // Two leaves whose dotted names collide: ['a.b'] and ['a']['b'].
    const pt::tree clash =
        pt::dict({{"a.b", pt::array::ones({1})}, {"a", pt::dict({{"b", pt::array::ones({1})}})}});
    CHECK_THROWS_AS(pt::save(s / "x.safetensors", clash), pt::format_error);
    CHECK(!fs::exists(s / "c.safetensors"));
    CHECK(!fs::exists(s / "x.safetensors"));
}

TEST_CASE("checkpoint: every file of the malformed corpus is a clear format_error",
          "[checkpoint][corpus]") {
    std::size_t bad = 0, good = 0;
    for (const auto& entry : fs::directory_iterator(fs::path(PT_TEST_DATA) / "safetensors")) {
        const std::string name = entry.path().filename().string();
        INFO(name);
        if (name.starts_with("bad_")) {
            ++bad;
            bool clear = false;
            try {
                (void)pt::load_arrays(entry.path());
                (void)pt::load_tree(entry.path());
            } catch (const pt::format_error& e) {
                clear = std::string(e.what()).starts_with("safetensors ");
            }
            CHECK(clear);
        } else {
            ++good;
            CHECK_NOTHROW(pt::load_arrays(entry.path()));
        }
    }
    CHECK(bad == 26);
    CHECK(good == 5);
    const auto two =
        pt::load_arrays(fs::path(PT_TEST_DATA) / "safetensors/good_two_tensors.safetensors");
    CHECK(two.at("a").to_doubles() == std::vector<double>{1.5, -2.0});
    CHECK(two.at("b").item() == -7);
    // An unaligned float64 is copied into an aligned buffer, with the right value.
    CHECK(
        pt::load_arrays(fs::path(PT_TEST_DATA) / "safetensors/good_unpadded_unaligned.safetensors")
            .at("x")
            .item() == 0.25);
}

TEST_CASE("checkpoint: .npy in every byte and memory order", "[checkpoint][npy]") {
    const fs::path dir = fs::path(PT_TEST_DATA) / "npy";
    const std::vector<double> expected{0, 1, 2, 3, 4, 5};
    for (const char* name : {"f4_c.npy", "f8_big_endian.npy", "i4_fortran.npy", "i8_v2.npy"}) {
        INFO(name);
        const pt::array a = pt::load_npy(dir / name);
        CHECK(a.shape() == pt::shape_type{2, 3});
        CHECK(a.to_doubles() == expected);
    }
    CHECK(pt::load_npy(dir / "f8_big_endian.npy").dtype() == pt::dtype::float64);
    CHECK(pt::load_npy(dir / "b1.npy").to_doubles() == std::vector<double>{1, 0, 1});
    for (const char* name : {"bad_magic.npy", "bad_descr.npy", "truncated_data.npy"})
        CHECK_THROWS_AS(pt::load_npy(dir / name), pt::format_error);
    scratch s;
    const pt::array r = rnd::normal(rnd::make_key(4), {3, 4, 5}, pt::dtype::float64);
    pt::save_npy(s / "r.npy", r);
    CHECK(pt::array_equal(pt::load_npy(s / "r.npy"), r));
    pt::save_npy(s / "v.npy", pt::array{1, 2, 3});
    CHECK(pt::load_npy(s / "v.npy").to_doubles() == std::vector<double>{1, 2, 3});
    pt::save_npy(s / "scalar.npy", pt::array::scalar<std::int64_t>(9));
    CHECK(pt::load_npy(s / "scalar.npy").item() == 9);
}
