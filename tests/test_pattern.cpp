// Tests for <paramtree/pattern.hpp>: parsing and printing, matching paths, expand_pattern over
// trees (ties included), and patterns wherever a `where` is taken.
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

namespace pt = paramtree;

namespace {

pt::tree block(float seed) {
    const auto w = [&](float v) { return pt::array::full({2, 2}, v, pt::dtype::float32); };
    return pt::record(
        "Block",
        {{"attn",
          pt::record(
              "Attn",
              {{"q", pt::record("L", {{"weight", w(seed)}, {"bias", pt::array::zeros({2})}})},
               {"k", pt::record("L", {{"weight", w(seed + 1)}, {"bias", pt::array::zeros({2})}})},
               {"v",
                pt::record("L", {{"weight", w(seed + 2)}, {"bias", pt::array::zeros({2})}})}})},
         {"mlp", pt::record("L", {{"weight", w(seed + 3)}, {"bias", pt::array::zeros({2})}})}});
}

pt::tree model(std::size_t n = 6) {
    std::vector<pt::tree> blocks;
    for (std::size_t i = 0; i < n; ++i)
        blocks.push_back(block(static_cast<float>(10 * i)));
    return pt::dict({{"blocks", pt::list(blocks)}, {"head", pt::array::ones({3})}});
}

} // namespace

TEST_CASE("pattern: parses back from its printed form", "[pattern]") {
    for (const char* text :
         {"blocks[*].mlp", "**.bias", "blocks[0:4].attn.{q,k}.weight", "blocks[2:].*",
          "['a.b'][:3]", "[\"it's\"].**.w", "layers.0.bias", "*", "**", "head"}) {
        INFO(text);
        const pt::pattern p(text);
        CHECK(pt::pattern(p.to_string()) == p);
    }
    CHECK(pt::pattern("layers.0.bias").to_string() == "layers[0].bias");
    CHECK(pt::pattern(pt::parse_path("['a'][2].w")).to_string() == "['a'][2].w");
    for (const char* bad : {"blocks[", "a.{q,}", "a.{q", "[3:1]", "a..b", "x[1:y]"}) {
        INFO(bad);
        CHECK_THROWS_AS(pt::pattern(bad), pt::path_error);
    }
}

TEST_CASE("pattern: matches paths", "[pattern]") {
    const pt::pattern p("blocks[0:2].attn.{q,k}.weight");
    CHECK(p.matches(pt::parse_path("blocks[1].attn.k.weight")));
    CHECK(p.matches(pt::parse_path("['blocks'][0]['attn']['q']['weight']"))); // dict keys too
    CHECK_FALSE(p.matches(pt::parse_path("blocks[2].attn.q.weight")));
    CHECK_FALSE(p.matches(pt::parse_path("blocks[1].attn.v.weight")));
    CHECK_FALSE(p.matches(pt::parse_path("blocks[1].attn.q")));
    const pt::pattern deep("**.bias");
    CHECK(deep.matches(pt::parse_path("bias")));
    CHECK(deep.matches(pt::parse_path("a[3].b.bias")));
    CHECK_FALSE(deep.matches(pt::parse_path("a.bias.x")));
    CHECK(pt::pattern("a.**").matches(pt::parse_path("a")));
    CHECK(pt::pattern("*").matches(pt::parse_path("[7]")));
    CHECK_FALSE(pt::pattern("*").matches(pt::path{}));
    CHECK(pt::pattern("[*]").matches(pt::parse_path("[0]")));
    CHECK_FALSE(pt::pattern("[*]").matches(pt::parse_path("a")));
}

TEST_CASE("pattern: expand_pattern lists a tree's positions in flatten order", "[pattern]") {
    const auto t = model(3);
    const auto mlps = pt::expand_pattern(t, pt::pattern("blocks[*].mlp"));
    REQUIRE(mlps.size() == 3);
    CHECK(mlps[2] == pt::parse_path("['blocks'][2].mlp"));
    // Every bias, in the order flatten visits them.
    const auto biases = pt::expand_pattern(t, pt::pattern("**.bias"));
    CHECK(biases.size() == 12);
    std::vector<pt::path> flat;
    for (const auto& [p, leaf] : pt::flatten_with_path(t).leaves)
        if (pt::pattern("**.bias").matches(p)) flat.push_back(p);
    CHECK(biases == flat);
    CHECK(pt::expand_pattern(t, pt::pattern("blocks[0:2].attn.{q,k}.weight")).size() == 4);
    CHECK(pt::expand_pattern(t, pt::pattern("**")).size() == t.num_nodes());
    // Nothing matches: the error names the pattern and where its longest matching part leads.
    try {
        (void)pt::expand_pattern(t, pt::pattern("blocks[*].atn.q"));
        FAIL("no error");
    } catch (const pt::path_error& e) {
        const std::string what = e.what();
        CHECK(what.find("a position matching 'blocks[*].atn.q'") != std::string::npos);
        CHECK(what.find("the nearest: 'blocks[*]'") != std::string::npos);
        CHECK(what.find(".attn .mlp") != std::string::npos);
    }
}

TEST_CASE("pattern: a tied position is matched, not looked into", "[pattern]") {
    const auto tied =
        pt::share(model(3), pt::pattern("blocks[1:].attn"), pt::pattern("blocks[0].attn"));
    CHECK(pt::ties(tied).size() == 2);
    CHECK(pt::expand_pattern(tied, pt::pattern("blocks[*].attn")).size() == 3);
    // Below a tied position there is nothing stored: only block 0's weights are leaves.
    CHECK(pt::expand_pattern(tied, pt::pattern("blocks[*].attn.*.weight")).size() == 3);
}

TEST_CASE("pattern: one share call ties the same attention weights across six blocks",
          "[pattern][shared]") {
    const auto t = model(6);
    const auto tied = pt::share(t, pt::pattern("blocks[1:6].attn"), pt::pattern("blocks[0].attn"));
    CHECK(pt::ties(tied).size() == 5);
    const auto count = pt::count_parameters(tied);
    CHECK(count.expanded_arrays == pt::count_parameters(t).arrays);
    CHECK(count.arrays == count.expanded_arrays - 5 * 6); // 6 arrays per attention, 5 ties
    const auto full = pt::expand(tied);
    for (std::size_t i = 1; i < 6; ++i)
        CHECK(pt::same_storage(full["blocks"][i]["attn"]["k"]["weight"].as_array(),
                               full["blocks"][0]["attn"]["k"]["weight"].as_array()));
    // untie, select, tree_at and extract take patterns too.
    const auto loose = pt::untie(tied, pt::pattern("blocks[4:].attn"));
    CHECK(pt::ties(loose).size() == 3);
    CHECK(pt::select(pt::pattern("blocks[*].mlp.bias"), t).size() == 6);
    const auto zeroed = pt::tree_at(pt::pattern("**.bias"), t, pt::array::ones({2}));
    CHECK(zeroed["blocks"][5]["mlp"]["bias"].as_array().item(0) == 1.0);
    CHECK(pt::tree_equal(pt::extract(tied, pt::pattern("blocks[3]")), full["blocks"][3]));
    // A pattern that matches nothing fails the call with the pattern's error.
    CHECK_THROWS_AS(pt::share(t, pt::pattern("blocks[7:].attn"), pt::pattern("blocks[0].attn")),
                    pt::path_error);
}
