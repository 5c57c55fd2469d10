// The model-based property test of every tree operation on tied trees (tests/tie_model.hpp):
// random tied trees and operation sequences against the untied meaning. `scripts/fuzz ties`
// runs the same generator for as long as it is given (tests/tie_model_main.cpp).
#include <catch2/catch.hpp>

#include "tie_model.hpp"

#include <cstdlib>
#include <filesystem>

#include <unistd.h>

namespace {

// 20,000 in the release suite; the sanitizer build (slower by ~10x) runs a share of them.
std::uint64_t sequences() {
    if (const char* n = std::getenv("PT_TIE_MODEL_SEQUENCES")) return std::stoull(n);
#if defined(__SANITIZE_ADDRESS__)
    return 2000;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 2000;
#else
    return 20000;
#endif
#else
    return 20000;
#endif
}

} // namespace

TEST_CASE("tie model: every operation keeps the untied meaning", "[tie_model]") {
    const auto file = std::filesystem::temp_directory_path() /
                      ("pt_tie_model_" + std::to_string(::getpid()) + ".safetensors");
    tie_model::coverage seen;
    const tie_model::runner run(file, &seen);
    const std::uint64_t n = sequences();
    for (std::uint64_t seed = 0; seed < n; ++seed) {
        const auto c = tie_model::random_case(seed);
        if (const auto f = run.run(c)) {
            const auto small = tie_model::shrink(tie_model::runner(file), c, f->check);
            const auto again = tie_model::runner(file).run(small);
            FAIL("seed " << seed << ": " << f->check << "\n"
                         << (again ? again->detail : f->detail) << "\n"
                         << tie_model::cpp_case(small));
        }
    }
    std::filesystem::remove(file);
    // The generator reaches what it is for: ties, nested scopes, every operation run.
    CHECK(seen.live_ties > n / 4);
    CHECK(seen.nested_scopes > n / 200);
    for (int k = 0; k < static_cast<int>(tie_model::op_kind::count_); ++k)
        CHECK(seen.ran[k] > n / 40);
}

TEST_CASE("tie model: a failing case shrinks and prints as C++", "[tie_model]") {
    // A property that fails on purpose (any tree with a live tie) shows the machinery works.
    tie_model::case_recipe found;
    bool have = false;
    for (std::uint64_t seed = 0; seed < 500 && !have; ++seed) {
        found = tie_model::random_case(seed);
        tie_model::model m;
        m.base = tie_model::build_untied(found.tree.base);
        (void)tie_model::build_tied(found.tree, m, {});
        have = m.ties.size() >= 2 && found.ops.size() >= 2;
    }
    REQUIRE(have);
    // Shrink against "has a live tie": the smallest case keeps one share call and no operation.
    const auto live = [](const tie_model::case_recipe& c) {
        tie_model::model m;
        m.base = tie_model::build_untied(c.tree.base);
        (void)tie_model::build_tied(c.tree, m, {});
        return !m.ties.empty();
    };
    tie_model::case_recipe c = found;
    for (bool progress = true; progress;) {
        progress = false;
        for (auto& d : tie_model::smaller(c))
            if (live(d)) {
                c = std::move(d);
                progress = true;
                break;
            }
    }
    CHECK(c.ops.empty());
    CHECK(c.tree.shares.size() == 1);
    CHECK(c.tree.shares[0].size() == 1);
    const std::string code = tie_model::cpp_case(c);
    CHECK(code.find("pt::share(t, std::vector<pt::path>{pt::parse_path(") != std::string::npos);
}
