// Tests for <paramtree/alias.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

#include <sys/resource.h>

namespace pt = paramtree;

TEST_CASE("alias: buffers and nodes used twice are found", "[alias]") {
    const auto w = pt::array::ones({4, 4});
    const auto block = pt::record("Block", {{"w", pt::array::zeros({2})}});
    const auto t = pt::dict({{"a", w},
                             {"b", pt::list({w, w.reshape({16})})},
                             {"c", block},
                             {"d", block},
                             {"e", pt::array::ones({4, 4})}});
    const auto groups = pt::find_aliases(t);
    REQUIRE(groups.size() == 2);
    CHECK(pt::keystr(groups[0].source) == "['a']");
    REQUIRE(groups[0].others.size() == 2);
    CHECK(pt::keystr(groups[0].others[0]) == "['b'][0]");
    CHECK(pt::keystr(groups[0].others[1]) == "['b'][1]");
    CHECK(pt::keystr(groups[1].source) == "['c']");
    CHECK(pt::keystr(groups[1].others[0]) == "['d']");
    CHECK(pt::find_aliases(pt::list({pt::array::ones({2}), pt::array::ones({2})})).empty());
}

TEST_CASE("alias: share_aliases keeps the tie through an update", "[alias]") {
    const auto w = pt::array::ones({4, 4});
    const auto t = pt::dict({{"a", w}, {"b", pt::list({w, w.reshape({16})})}});
    // Without sharing, one map splits the aliases into independent copies:
    const auto split =
        pt::tree_map([](const pt::tree& l) { return pt::array::full(l.as_array().shape(), 2); }, t);
    CHECK_FALSE(pt::same_storage(split["a"].as_array(), split["b"][0].as_array()));
    // With sharing, the tie survives:
    const auto s = pt::share_aliases(t);
    CHECK(s.num_leaves() == 1);
    const auto stepped = pt::expand(pt::tree_map(
        [](const pt::tree& l) { return pt::array::full(l.as_array().shape(), 2); }, s));
    CHECK(pt::same_storage(stepped["a"].as_array(), stepped["b"][0].as_array()));
    CHECK(stepped["b"][1].as_array().shape() == pt::shape_type{16}); // reshape tie
    CHECK(stepped["b"][1].as_array().item(15) == 2.0);
    const auto plain = pt::list({1, 2});
    CHECK(pt::same_node(pt::share_aliases(plain), plain));
}

TEST_CASE("alias: find_aliases is linear in depth (a 20,000-deep chain)", "[alias]") {
    // The old walk kept every node's full path: memory grew with depth squared (9.4 GiB here).
    const pt::array w = pt::array::ones({2});
    pt::tree t = pt::list({w, w});
    for (int i = 0; i < 20000; ++i)
        t = pt::list({t});
    struct rusage before {};
    ::getrusage(RUSAGE_SELF, &before);
    const auto groups = pt::find_aliases(t);
    struct rusage after {};
    ::getrusage(RUSAGE_SELF, &after);
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].source.size() == 20001);
    CHECK(groups[0].others.size() == 1);
    // Peak resident memory grows by far less than the quadratic walk's gigabytes.
    CHECK(after.ru_maxrss - before.ru_maxrss < 256 * 1024); // KiB
}

TEST_CASE("alias: groups come in flatten order of their first position, subtrees and buffers "
          "mixed",
          "[alias]") {
    const auto u = pt::array::ones({3}), v = pt::array::zeros({2});
    const auto block = pt::record("Block", {{"w", pt::array::zeros({2})}});
    // Flatten order: .x.w, .y[0] (v), .y[1] (u), .z[0] (u), .z[1] (block), .z[2] (v).
    const auto t =
        pt::record("M", {{"x", block}, {"y", pt::tuple({v, u})}, {"z", pt::list({u, block, v})}});
    const auto groups = pt::find_aliases(t);
    REQUIRE(groups.size() == 3);
    CHECK(pt::keystr(groups[0].source) == ".x");
    CHECK(pt::keystr(groups[0].others.at(0)) == ".z[1]");
    CHECK(pt::keystr(groups[1].source) == ".y[0]");
    CHECK(pt::keystr(groups[1].others.at(0)) == ".z[2]");
    CHECK(pt::keystr(groups[2].source) == ".y[1]");
    CHECK(pt::keystr(groups[2].others.at(0)) == ".z[0]");
    // Tied, the tree keeps one leaf per group and expands back to the same values.
    const auto s = pt::share_aliases(t);
    CHECK(s.num_leaves() == 3);
    const auto full = pt::expand(s);
    CHECK(pt::structure(full) == pt::structure(t));
    CHECK(pt::same_storage(full["z"][0].as_array(), u));
    CHECK(pt::same_node(full["z"][1], full["x"]));
    // Positions inside a Shared scope are named without an entry for the scope (dict keys in
    // sorted order: 'again' first).
    const auto nested = pt::dict({{"inner", s}, {"again", v}});
    const auto inner_groups = pt::find_aliases(nested);
    REQUIRE(inner_groups.size() == 1);
    CHECK(pt::keystr(inner_groups[0].source) == "['again']");
    CHECK(pt::keystr(inner_groups[0].others.at(0)) == "['inner'].y[0]");
}
