// Tests for <paramtree/treedef.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/treedef.hpp>

#include <unordered_set>

namespace pt = paramtree;

TEST_CASE("treedef: counts, kind, children", "[treedef]") {
    const auto t = pt::dict({{"a", 1}, {"b", pt::list({2, pt::none(), 3})}});
    const auto def = pt::structure(t);
    CHECK(def.num_leaves() == 3);
    CHECK(def.num_nodes() == 6);
    CHECK(def.kind() == pt::node_kind::dict);
    CHECK(def.arity() == 2);
    const auto kids = def.children();
    REQUIRE(kids.size() == 2);
    CHECK(kids[0].to_string() == "treedef(*)");
    CHECK(kids[1].to_string() == "treedef([*, None, *])");
}

TEST_CASE("treedef: to_string in insertion order", "[treedef]") {
    const auto t = pt::dict({{"b", pt::list({1, 2})}, {"a", pt::tuple({3})}});
    CHECK(pt::structure(t).to_string() == "treedef({'b': [*, *], 'a': (*,)})");
    const auto r = pt::record("Linear", {{"weight", 1}, {"bias", 2}}, {{"in_features", 64}});
    CHECK(pt::structure(r).to_string() == "treedef(Linear(weight=*, bias=*, in_features=64))");
    CHECK(pt::treedef().to_string() == "treedef(*)");
}

TEST_CASE("treedef: equality and hash ignore dict insertion order", "[treedef]") {
    const auto a = pt::dict({{"x", 1}, {"y", 2}});
    const auto b = pt::dict({{"y", 20}, {"x", 10}});
    CHECK(pt::structure(a) == pt::structure(b));
    CHECK(pt::structure(a).hash() == pt::structure(b).hash());
    CHECK_FALSE(pt::structure(a) == pt::structure(pt::dict({{"x", 1}, {"z", 2}})));
    CHECK_FALSE(pt::structure(pt::list({1, 2})) == pt::structure(pt::tuple({1, 2})));
    const auto r1 = pt::record("L", {{"w", 1}}, {{"n", 3}});
    const auto r2 = pt::record("L", {{"w", 1}}, {{"n", 4}});
    CHECK_FALSE(pt::structure(r1) == pt::structure(r2)); // static fields belong to the structure
    std::unordered_set<pt::treedef> set{pt::structure(a), pt::structure(b)};
    CHECK(set.size() == 1);
}

TEST_CASE("treedef: flattening one tree twice gives one shared block", "[treedef]") {
    const auto t = pt::list({1, pt::dict({{"a", 2}})});
    const auto d1 = pt::structure(t);
    const auto d2 = pt::structure(t);
    CHECK(pt::same_block(d1, d2));
    auto [leaves, def] = pt::flatten(t);
    const auto back = pt::unflatten(def, leaves);
    CHECK(pt::same_block(pt::structure(back), def));
}

TEST_CASE("treedef: compose", "[treedef]") {
    const auto outer = pt::structure(pt::list({1, 2}));
    const auto inner = pt::structure(pt::tuple({1, 2, 3}));
    const auto c = outer.compose(inner);
    CHECK(c.num_leaves() == 6);
    CHECK(c.to_string() == "treedef([(*, *, *), (*, *, *)])");
    CHECK(c == pt::structure(pt::list({pt::tuple({1, 2, 3}), pt::tuple({4, 5, 6})})));
}

TEST_CASE("treedef: leaf paths", "[treedef]") {
    const auto t = pt::dict({{"b", pt::list({1, 2})}, {"a", pt::record("R", {{"w", 3}})}});
    const auto paths = pt::structure(t).leaf_paths();
    REQUIRE(paths.size() == 3);
    CHECK(pt::keystr(paths[0]) == "['a'].w");
    CHECK(pt::keystr(paths[2]) == "['b'][1]");
}
