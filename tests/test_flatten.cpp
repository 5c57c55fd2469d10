// Tests for <paramtree/flatten.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>

namespace pt = paramtree;

TEST_CASE("flatten: leaves in sorted-key order, None has no leaves", "[flatten]") {
    const auto t = pt::list({1, pt::dict({{"b", 2}, {"a", 3}}), pt::none(), pt::tuple({4})});
    auto [leaves, def] = pt::flatten(t);
    REQUIRE(leaves.size() == 4);
    CHECK(leaves[0].as<std::int64_t>() == 1);
    CHECK(leaves[1].as<std::int64_t>() == 3);
    CHECK(leaves[2].as<std::int64_t>() == 2);
    CHECK(leaves[3].as<std::int64_t>() == 4);
    CHECK(def.to_string() == "treedef([*, {'b': *, 'a': *}, None, (*,)])");
    CHECK(pt::leaves(t).size() == 4);
}

TEST_CASE("flatten: unflatten round trip keeps leaves, insertion order and records", "[flatten]") {
    const auto w = pt::array::ones({3, 3});
    const auto t =
        pt::dict({{"z", pt::record("Linear", {{"weight", w}, {"bias", pt::none()}}, {{"n", 3}})},
                  {"a", pt::list({1.5, "s"})}});
    auto [leaves, def] = pt::flatten(t);
    const auto back = pt::unflatten(def, leaves);
    CHECK(back.keys() == std::vector<std::string>{"z", "a"});
    CHECK(pt::same_storage(back["z"]["weight"].as_array(), w));
    CHECK(back["z"].static_field("n") == pt::static_value(3));
    CHECK(back["a"][1].as<std::string>() == "s");
    // leaves are not copied: the same leaf nodes come back
    CHECK(pt::same_node(back["a"][0], t["a"][0]));
}

TEST_CASE("flatten: unflatten with new leaves", "[flatten]") {
    const auto t = pt::list({1, pt::list({2, 3})});
    const auto def = pt::structure(t);
    const auto u = pt::unflatten(def, std::vector<pt::tree>{10, 20, 30});
    CHECK(u[1][1].as<std::int64_t>() == 30);
    CHECK(pt::same_block(pt::structure(u), def));
}

TEST_CASE("flatten: wrong leaf count is a leaf_count_error", "[flatten][error]") {
    const auto def = pt::structure(pt::list({1, 2}));
    CHECK_THROWS_AS(pt::unflatten(def, std::vector<pt::tree>{1}), pt::leaf_count_error);
    CHECK_THROWS_WITH(pt::unflatten(def, std::vector<pt::tree>{1}),
                      Catch::Contains("expected 2 leaves, found 1"));
}

TEST_CASE("flatten: is_leaf stops descent", "[flatten]") {
    const auto t = pt::list({pt::tuple({1, 2}), pt::list({3})});
    auto [leaves, def] =
        pt::flatten(t, [](const pt::tree& n) { return n.kind() == pt::node_kind::tuple; });
    REQUIRE(leaves.size() == 2);
    CHECK(leaves[0].kind() == pt::node_kind::tuple);
    CHECK(def.to_string() == "treedef([*, [*]])");
    const auto back = pt::unflatten(def, leaves);
    CHECK(back[0][1].as<std::int64_t>() == 2);
    CHECK(pt::structure(back).num_leaves() == 3); // not the cached is_leaf structure
}

TEST_CASE("flatten: flatten_with_path", "[flatten]") {
    const auto t = pt::dict(
        {{"layers", pt::list({pt::record("L", {{"weight", 1}, {"bias", 2}})})}, {"head", 3}});
    auto [items, def] = pt::flatten_with_path(t);
    REQUIRE(items.size() == 3);
    CHECK(pt::keystr(items[0].first) == "['head']");
    CHECK(pt::keystr(items[1].first) == "['layers'][0].weight");
    CHECK(pt::keystr(items[2].first) == "['layers'][0].bias");
    CHECK(items[2].second.as<std::int64_t>() == 2);
    CHECK(def == pt::structure(t));
    auto [one, d1] = pt::flatten_with_path(pt::tree(5));
    REQUIRE(one.size() == 1);
    CHECK(one[0].first.empty());
}

TEST_CASE("flatten: flatten_up_to a prefix", "[flatten]") {
    const auto prefix = pt::structure(pt::list({0, 0}));
    const auto t = pt::list({1, pt::dict({{"a", 2}, {"b", 3}})});
    const auto parts = pt::flatten_up_to(prefix, t);
    REQUIRE(parts.size() == 2);
    CHECK(parts[1].kind() == pt::node_kind::dict);
    CHECK_THROWS_AS(pt::flatten_up_to(pt::structure(pt::list({0, pt::list({0})})), t),
                    pt::structure_error);
    CHECK_THROWS_WITH(
        pt::flatten_up_to(pt::structure(pt::list({0, pt::list({0})})), t),
        Catch::Contains("at [1]: expected a list of length 1 (the prefix), found a dict"));
    // The failing position deeper down, and a prefix through a Shared node (a tie is a leaf
    // of neither: the pruned tree's leaves come back).
    const auto deep = pt::dict({{"a", t}});
    CHECK_THROWS_WITH(
        pt::flatten_up_to(pt::structure(pt::dict({{"a", pt::list({0, pt::list({0})})}})), deep),
        Catch::Contains("at ['a'][1]: expected a list of length 1 (the prefix), found a dict"));
    const auto tied = pt::tie(pt::dict({{"u", pt::array::ones({2})}, {"v", pt::array::ones({2})}}),
                              "['v']", "['u']");
    const auto tied_parts = pt::flatten_up_to(pt::structure(tied), tied);
    REQUIRE(tied_parts.size() == 1);
    CHECK(pt::same_node(tied_parts[0], tied["u"]));
}

TEST_CASE("flatten: deep chain of 100,000 lists", "[flatten][deep]") {
    pt::tree t = 1.0;
    for (int i = 0; i < 100000; ++i)
        t = pt::list({t});
    auto [leaves, def] = pt::flatten(t);
    CHECK(leaves.size() == 1);
    CHECK(def.num_nodes() == 100001);
    const auto back = pt::unflatten(def, std::vector<pt::tree>{2.0});
    CHECK(back.num_nodes() == 100001);
    auto [items, d2] = pt::flatten_with_path(back);
    CHECK(items[0].first.size() == 100000);
    CHECK(def.to_string().size() == 2 * 100000 + std::string("treedef(*)").size());
    CHECK(def.leaf_paths()[0].size() == 100000);
}
