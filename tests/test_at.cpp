// Tests for <paramtree/at.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/at.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/print.hpp>

namespace pt = paramtree;

namespace {
pt::tree mlp(int n) {
    std::vector<pt::tree> layers;
    for (int i = 0; i < n; ++i)
        layers.push_back(pt::record(
            "Linear", {{"weight", pt::array::ones({4, 4})}, {"bias", pt::array::zeros({4})}}));
    return pt::dict({{"layers", pt::list(layers)}, {"step", 0}});
}
} // namespace

TEST_CASE("at: replace one leaf by path; everything else is shared", "[at]") {
    const auto t = mlp(10);
    const auto def = pt::structure(t); // caches the treedef in t's root
    const auto p = pt::parse_path("['layers'][3].bias");
    const auto u = pt::tree_at(p, t, pt::array::ones({4}));
    CHECK(u.at(p).as_array().item(0) == 1.0);
    CHECK(t.at(p).as_array().item(0) == 0.0); // the input is unchanged
    for (int i = 0; i < 10; ++i) {
        if (i == 3) continue;
        CHECK(pt::same_node(u["layers"][i], t["layers"][i]));
    }
    CHECK(pt::same_node(u["layers"][3]["weight"], t["layers"][3]["weight"]));
    CHECK_FALSE(pt::same_node(u["layers"], t["layers"]));
    CHECK(pt::same_block(pt::structure(u), def)); // leaf for leaf: structure kept, O(1) equality
}

TEST_CASE("at: selector callables, several paths, replace_fn", "[at]") {
    const auto t = mlp(3);
    const auto u = pt::tree_at([](pt::selector s) { return s["step"]; }, t,
                               [](const pt::tree& old) { return old.as<std::int64_t>() + 1; });
    CHECK(u["step"].as<std::int64_t>() == 1);
    const auto v = pt::tree_at(
        [](pt::selector s) {
            return std::vector{s["layers"][0]["bias"], s["layers"][2]["bias"]};
        },
        t, std::vector<pt::tree>{pt::array::full({4}, 5), pt::array::full({4}, 7)});
    CHECK(v["layers"][0]["bias"].as_array().item(0) == 5.0);
    CHECK(v["layers"][2]["bias"].as_array().item(0) == 7.0);
    const auto w = pt::tree_at(
        std::vector<pt::path>{pt::parse_path("['step']"), pt::parse_path("['layers'][1]")}, t,
        pt::tree{});
    CHECK(w["layers"][1].is_none());
    CHECK(w["step"].is_none());
    CHECK(pt::select([](pt::selector s) { return s["layers"][1]["weight"]; }, t)[0] ==
          pt::parse_path("['layers'][1].weight"));
}

TEST_CASE("at: where may be path text, keystr or dotted, resolved as the tree spells it",
          "[at][path]") {
    const auto t = mlp(3);
    const auto a = pt::tree_at("['layers'][1].bias", t, pt::array::ones({4}));
    // `layers` is a dict key here: the dotted name's field entry finds it.
    const auto b = pt::tree_at("layers.1.bias", t, pt::array::ones({4}));
    CHECK(pt::tree_equal(a, b));
    CHECK(b["layers"][1]["bias"].as_array().item(0) == 1.0);
    CHECK(pt::keystr(pt::select("layers.1.bias", t).at(0)) == "['layers'][1].bias");
    CHECK(pt::keystr(pt::select(pt::parse_path("layers.1"), t).at(0)) == "['layers'][1]");
    const auto c = pt::tree_at(std::vector<std::string>{"layers.0.bias", "[\"layers\"][2].bias"}, t,
                               pt::array::ones({4}));
    CHECK(c["layers"][0]["bias"].as_array().item(0) == 1.0);
    CHECK(c["layers"][2]["bias"].as_array().item(0) == 1.0);
    CHECK(c["layers"][1]["bias"].as_array().item(0) == 0.0);
    // The same node by two spellings is one selection, selected twice.
    CHECK_THROWS_WITH(pt::tree_at(std::vector<std::string>{"layers.0.bias", "['layers'][0].bias"},
                                  t, pt::array::ones({4})),
                      Catch::Contains("the same node selected twice"));
    CHECK_THROWS_WITH(pt::tree_at("layers.7.bias", t, pt::array::ones({4})),
                      Catch::Contains("['layers']") && Catch::Contains("[7]"));
    CHECK_THROWS_AS(pt::tree_at("layers..bias", t, pt::array::ones({4})), pt::path_error);
}

TEST_CASE("at: every dotted leaf name reads back to its leaf", "[at][path]") {
    // A dict keyed by numbers and names, records and lists: dotted names are ambiguous text,
    // resolution against the tree makes them exact.
    const auto t = pt::dict(
        {{"7", pt::list({pt::array::ones({1}), pt::record("R", {{"w", pt::array::zeros({2})}})})},
         {"blocks", pt::dict({{"0", pt::array::ones({3})}, {"x-y", pt::array::ones({4})}})},
         {"head", pt::record("Linear", {{"weight", pt::array::ones({5})}})}});
    const auto [leaves, def] = pt::flatten_with_path(t);
    REQUIRE(leaves.size() == 5);
    for (const auto& [p, leaf] : leaves) {
        INFO(pt::dotted(p));
        const auto back = pt::select(pt::dotted(p), t).at(0);
        CHECK(back == p);
        CHECK(pt::same_node(t.at(pt::parse_path(pt::dotted(p))), t.at(p)));
    }
}

TEST_CASE("at: replacing a subtree changes the structure", "[at]") {
    const auto t = mlp(2);
    const auto u = pt::tree_at(pt::parse_path("['layers'][0]"), t, pt::list({1, 2, 3}));
    CHECK(pt::to_string(u["layers"][0]) == "[1, 2, 3]");
    CHECK_FALSE(pt::structure(u) == pt::structure(t));
}

TEST_CASE("at: bad selections are path errors", "[at][error]") {
    const auto t = mlp(2);
    CHECK_THROWS_AS(pt::tree_at(pt::parse_path("['layers'][5]"), t, 1), pt::path_error);
    CHECK_THROWS_WITH(pt::tree_at([](pt::selector s) { return s["layers"][0]["wieght"]; }, t, 1),
                      Catch::Contains("at ['layers'][0]: expected a node with child .wieght"));
    const auto p = pt::parse_path("['step']");
    CHECK_THROWS_WITH(pt::tree_at(std::vector<pt::path>{p, p}, t, 1),
                      Catch::Contains("selected twice"));
    CHECK_THROWS_WITH(pt::tree_at(std::vector<pt::path>{pt::parse_path("['layers']"),
                                                        pt::parse_path("['layers'][0]")},
                                  t, 1),
                      Catch::Contains("also contains"));
    CHECK_THROWS_AS(pt::tree_at(std::vector<pt::path>{p}, t, std::vector<pt::tree>{1, 2}),
                    pt::path_error);
}

TEST_CASE("at: deep chain edit copies only the path", "[at][deep]") {
    pt::tree t = 1.0;
    pt::path p;
    for (int i = 0; i < 20000; ++i) {
        t = pt::list({t, 0});
        p.push_back(pt::index_key{0});
    }
    const auto u = pt::tree_at(p, t, 2.0);
    CHECK(u.at(p).as<double>() == 2.0);
    CHECK(pt::same_node(u[1], t[1]));
}
