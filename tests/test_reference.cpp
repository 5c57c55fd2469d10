// Tests for <paramtree/reference.hpp>: Inox-style tagged references.
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

namespace pt = paramtree;

namespace {
pt::tree linear(float fill) {
    return pt::record(
        "Linear",
        {{"weight", pt::array::full({64, 64}, fill)}, {"bias", pt::array::full({64}, fill)}},
        {{"in_features", 64}, {"out_features", 64}});
}

// Inox's WeightSharingMLP (seed 003): l2 is l1; l4.weight is l3.weight.
pt::tree weight_sharing_mlp() {
    const auto l1 = pt::reference("l1", linear(1));
    const auto l3_weight = pt::reference("l3.weight", pt::array::full({64, 64}, 3));
    const auto l3 =
        pt::record("Linear", {{"weight", l3_weight}, {"bias", pt::array::full({64}, 3)}},
                   {{"in_features", 64}, {"out_features", 64}});
    const auto l4 =
        pt::record("Linear", {{"weight", l3_weight}, {"bias", pt::array::full({64}, 4)}},
                   {{"in_features", 64}, {"out_features", 64}});
    return pt::scope(
        pt::record("WeightSharingMLP", {{"l1", l1}, {"l2", l1}, {"l3", l3}, {"l4", l4}}));
}
} // namespace

TEST_CASE("reference: the WeightSharingMLP lists exactly the seed's 5 parameters",
          "[reference][seed]") {
    const auto model = weight_sharing_mlp();
    auto [params, def] = pt::flatten_with_path(model);
    std::vector<std::string> listing;
    for (const auto& [p, leaf] : params)
        listing.push_back(pt::keystr(p) + ": " + pt::to_string(leaf));
    CHECK(listing == std::vector<std::string>{".l1.weight: f32[64,64]", ".l1.bias: f32[64]",
                                              ".l3.weight: f32[64,64]", ".l3.bias: f32[64]",
                                              ".l4.bias: f32[64]"});
    const auto full = pt::expand(model);
    CHECK(pt::same_node(full["l2"], full["l1"]));
    CHECK(pt::same_storage(full["l4"]["weight"].as_array(), full["l3"]["weight"].as_array()));
    CHECK(full["l4"]["bias"].as_array().item(0) == 4.0);
    CHECK(pt::to_string(model) ==
          "Shared(WeightSharingMLP(l1=Linear(weight=f32[64,64], bias=f32[64], in_features=64, "
          "out_features=64), "
          "l2=@l1, l3=Linear(weight=f32[64,64], bias=f32[64], in_features=64, out_features=64), "
          "l4=Linear(weight=@l3.weight, bias=f32[64], in_features=64, out_features=64)))");
}

TEST_CASE("reference: the tags are part of the structure", "[reference]") {
    const auto a = weight_sharing_mlp();
    const auto b =
        pt::share(pt::expand(a), std::vector{pt::parse_path(".l2"), pt::parse_path(".l4.weight")},
                  std::vector{pt::parse_path(".l1"), pt::parse_path(".l3.weight")});
    CHECK(pt::expand(b).num_leaves() == pt::expand(a).num_leaves());
    CHECK_FALSE(pt::structure(a) == pt::structure(b)); // same ties, but b has no tags
    CHECK(pt::structure(a) == pt::structure(weight_sharing_mlp()));
}

TEST_CASE("reference: markers, trees without markers, single uses", "[reference]") {
    CHECK(pt::is_reference(pt::reference("x", 1)));
    CHECK_FALSE(pt::is_reference(pt::record("Reference", {{"value", 1}})));
    const auto plain = pt::list({1, 2});
    CHECK(pt::same_node(pt::scope(plain), plain));
    const auto once = pt::scope(pt::list({pt::reference("a", pt::array::zeros({2})), 3}));
    CHECK(once.kind() == pt::node_kind::list); // unwrapped, nothing to tie
    CHECK(once[0].is_array());
}

TEST_CASE("reference: later uses must match the first", "[reference][error]") {
    const auto t = pt::list(
        {pt::reference("w", pt::array::zeros({2, 2})), pt::reference("w", pt::array::zeros({3}))});
    CHECK_THROWS_AS(pt::scope(t), pt::sharing_error);
    CHECK_THROWS_WITH(
        pt::scope(t),
        Catch::Contains(
            "at [1]: expected f32[3] (the node being tied), found f32[2,2] from get [0]"));
    const auto u =
        pt::list({pt::reference("w", pt::list({1, 2})), pt::reference("w", pt::list({1}))});
    CHECK_THROWS_WITH(
        pt::scope(u),
        Catch::Contains(
            "scope: reference 'w': at [1]: expected treedef([*, *]) (as at its first use [0])"));
}

TEST_CASE("reference: nested references are named without their markers", "[reference]") {
    const auto w = pt::array::ones({2, 2});
    const auto block = [&](const pt::array& bias) {
        return pt::record("Block", {{"w", pt::reference("inner", w)}, {"b", bias}});
    };
    // 'outer' first used at ['a'] (with 'inner' inside it, at ['a'].w), then again at ['d'];
    // 'inner' again at ['c'].
    const auto t = pt::dict({{"a", pt::reference("outer", block(pt::array::zeros({2})))},
                             {"c", pt::reference("inner", w)},
                             {"d", pt::reference("outer", block(pt::array::zeros({2})))}});
    const auto s = pt::scope(t);
    CHECK(s.num_leaves() == 2); // w and the first block's bias
    std::vector<std::string> ties;
    for (const auto& tie : pt::ties(s))
        ties.push_back(pt::keystr(tie.tied) + " <- " + pt::keystr(tie.source));
    CHECK(ties == std::vector<std::string>{"['c'] <- ['a'].w", "['d'] <- ['a']"});
    const auto full = pt::expand(s);
    CHECK(pt::same_storage(full["c"].as_array(), w));
    CHECK(pt::same_storage(full["d"]["w"].as_array(), w));
    // A mismatched later use is named by its position without markers.
    const auto bad = pt::list({pt::reference("r", pt::array::zeros({2})),
                               pt::dict({{"x", pt::reference("r", pt::array::zeros({3}))}})});
    try {
        (void)pt::scope(bad);
        FAIL("scope accepted a mismatched reference");
    } catch (const pt::sharing_error& e) {
        CHECK(e.where() == pt::parse_path("[1]['x']"));
    }
}
