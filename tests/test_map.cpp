// Tests for <paramtree/map.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/print.hpp>

namespace pt = paramtree;

TEST_CASE("map: unary and n-ary tree_map keep structure", "[map]") {
    const auto a = pt::dict({{"x", 1.0}, {"y", pt::list({2.0, 3.0})}});
    const auto b = pt::dict({{"y", pt::list({20.0, 30.0})}, {"x", 10.0}});
    const auto doubled = pt::tree_map([](const pt::tree& l) { return 2 * l.as<double>(); }, a);
    CHECK(doubled["y"][1].as<double>() == 6.0);
    CHECK(doubled.keys() == a.keys());
    const auto sum = pt::tree_map(
        [](const pt::tree& l, const pt::tree& r) { return l.as<double>() + r.as<double>(); }, a, b);
    CHECK(sum["x"].as<double>() == 11.0);
    CHECK(sum["y"][0].as<double>() == 22.0);
    const auto three = pt::tree_map(
        [](const pt::tree& p, const pt::tree& q, const pt::tree& r) {
            return p.as<double>() * q.as<double>() - r.as<double>();
        },
        a, b, a);
    CHECK(three["y"][1].as<double>() == 87.0);
}

TEST_CASE("map: mismatch names the first differing key path and both sides", "[map][error]") {
    const auto a = pt::dict({{"a", pt::dict({{"b", pt::list({1, 2, 3})}})}});
    const auto b = pt::dict({{"a", pt::dict({{"b", pt::list({1, 2, 3, 4})}})}});
    auto f = [](const pt::tree& l, const pt::tree&) { return l; };
    CHECK_THROWS_AS(pt::tree_map(f, a, b), pt::structure_error);
    CHECK_THROWS_WITH(
        pt::tree_map(f, a, b),
        "tree_map: structure mismatch: at ['a']['b']: expected a list of length 3 (as "
        "in tree 0), found a list of length 4 in tree 1");
    try {
        (void)pt::tree_map(f, a, b);
    } catch (const pt::structure_error& e) {
        CHECK(e.path() == "['a']['b']");
    }
    const auto c = pt::dict({{"a", pt::dict({{"c", pt::list({1, 2, 3})}})}});
    CHECK_THROWS_WITH(pt::tree_map(f, a, c),
                      Catch::Contains("at ['a']: expected a dict with keys ['b']"));
}

TEST_CASE("map: an array error inside the mapped function names the leaf", "[map][error]") {
    const auto a = pt::dict({{"ok", pt::array::ones({2})},
                             {"layers", pt::list({pt::array::ones({3}), pt::array::ones({4})})}});
    const auto b = pt::dict({{"ok", pt::array::ones({2})},
                             {"layers", pt::list({pt::array::ones({3}), pt::array::ones({5})})}});
    const auto add = [](const pt::tree& x, const pt::tree& y) {
        return pt::tree(pt::add(x.as_array(), y.as_array()));
    };
    try {
        (void)pt::tree_map(add, a, b);
        FAIL("expected shape_error");
    } catch (const pt::shape_error& e) { // the type is kept
        CHECK(e.path() == "['layers'][1]");
        CHECK(e.context().find("(in tree_map)") != std::string::npos);
        CHECK_THAT(e.what(), Catch::Contains("at ['layers'][1]") && Catch::Contains("[4]") &&
                                 Catch::Contains("[5]"));
    }
    try {
        (void)pt::tree_map_with_path(
            [&](const pt::path&, const pt::tree& x, const pt::tree& y) { return add(x, y); }, a, b);
        FAIL("expected shape_error");
    } catch (const pt::shape_error& e) {
        CHECK(e.path() == "['layers'][1]");
    }
    // An error that already names a place keeps it (it may be in another tree).
    const auto other = pt::dict({{"z", 1}});
    try {
        (void)pt::tree_map([&](const pt::tree&) { return other.at(pt::parse_path("['z'][0]")); },
                           a);
        FAIL("expected path_error");
    } catch (const pt::path_error& e) {
        CHECK(e.path() == "['z']");
        CHECK(e.context() == "tree::at");
    }
}

TEST_CASE("map: tree_map_with_path and is_leaf", "[map]") {
    const auto t = pt::dict({{"layers", pt::list({pt::tuple({1, 2})})}});
    const auto named =
        pt::tree_map_with_path([](const pt::path& p, const pt::tree&) { return pt::keystr(p); }, t);
    CHECK(named["layers"][0][1].as<std::string>() == "['layers'][0][1]");
    const auto counted = pt::tree_map(
        pt::map_options{[](const pt::tree& n) { return n.kind() == pt::node_kind::tuple; }},
        [](const pt::tree& sub) { return static_cast<std::int64_t>(sub.size()); }, t);
    CHECK(counted["layers"][0].as<std::int64_t>() == 2);
}

TEST_CASE("map: broadcast_prefix", "[map]") {
    const auto prefix = pt::dict({{"a", 1}, {"b", 2}});
    const auto full = pt::dict({{"a", pt::list({0, 0})}, {"b", 0}});
    const auto out = pt::broadcast_prefix(prefix, full);
    CHECK(pt::to_string(out) == "{'a': [1, 1], 'b': 2}");
    CHECK_THROWS_AS(pt::broadcast_prefix(pt::list({1, 2}), full), pt::structure_error);
}

TEST_CASE("map: tree_reduce, tree_all, tree_any", "[map]") {
    const auto t = pt::list({pt::array::ones({2, 3}), pt::array::zeros({4}), 0.5});
    const auto n = pt::tree_reduce(
        [](std::size_t acc, const pt::tree& l) {
            return acc + (l.is_array() ? l.as_array().size() : 1);
        },
        t, std::size_t{0});
    CHECK(n == 11);
    CHECK_FALSE(pt::tree_all(t));
    CHECK(pt::tree_any(t));
    CHECK(pt::tree_all(t, [](const pt::tree& l) { return l.is_leaf(); }));
    CHECK_FALSE(pt::tree_any(pt::list({0, false, ""})));
}

TEST_CASE("map: tree_transpose", "[map]") {
    const auto t = pt::list({pt::dict({{"w", 1}, {"b", 2}}), pt::dict({{"w", 3}, {"b", 4}})});
    const auto outer = pt::structure(pt::list({0, 0}));
    const auto inner = pt::structure(pt::dict({{"w", 0}, {"b", 0}}));
    const auto out = pt::tree_transpose(outer, inner, t);
    CHECK(pt::to_string(out) == "{'w': [1, 3], 'b': [2, 4]}");
    CHECK_THROWS_AS(pt::tree_transpose(outer, pt::structure(pt::list({0})), t),
                    pt::structure_error);
}

TEST_CASE("map: a chain of 100,000 nested lists maps without recursion", "[map][deep]") {
    pt::tree t = 1.0;
    for (int i = 0; i < 100000; ++i)
        t = pt::list({t, static_cast<double>(i)});
    const auto doubled = pt::tree_map(
        [](const pt::tree& l, const pt::tree& r) { return l.as<double>() + r.as<double>(); }, t, t);
    CHECK(doubled.num_leaves() == 100001);
    CHECK(doubled[1].as<double>() == 2 * 99999.0);
    const auto sum = pt::tree_reduce(
        [](double acc, const pt::tree& l) { return acc + l.as<double>(); }, doubled, 0.0);
    CHECK(sum == 2 * (1.0 + 99999.0 * 100000.0 / 2));
}

TEST_CASE("map: tree_transpose refuses structures without leaves", "[map]") {
    const auto outer = pt::structure(pt::list({}));
    const auto inner = pt::structure(pt::dict({{"w", 1}, {"b", 2}}));
    CHECK_THROWS_AS(pt::tree_transpose(outer, inner, pt::list({})), pt::structure_error);
    CHECK_THROWS_AS(
        pt::tree_transpose(inner, outer, pt::dict({{"w", pt::list({})}, {"b", pt::list({})}})),
        pt::structure_error);
}
