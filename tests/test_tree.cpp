// Tests for <paramtree/tree.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/at.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/tree.hpp>

#include <thread>

namespace pt = paramtree;

TEST_CASE("tree: leaves convert implicitly", "[tree]") {
    const pt::tree a = pt::array::zeros({3});
    const pt::tree i = 3;
    const pt::tree d = 2.5;
    const pt::tree b = true;
    const pt::tree s = "relu";
    CHECK(a.is_array());
    CHECK(i.as<std::int64_t>() == 3);
    CHECK(d.as<double>() == 2.5);
    CHECK(b.as<bool>());
    CHECK(s.as<std::string>() == "relu");
    CHECK(pt::tree{}.is_none());
    CHECK(pt::none().num_leaves() == 0);
}

TEST_CASE("tree: wrong leaf access is a leaf_error", "[tree][error]") {
    const pt::tree s = "relu";
    CHECK_THROWS_AS(s.as_array(), pt::leaf_error);
    CHECK_THROWS_WITH(s.as_array(),
                      Catch::Contains("expected an array leaf, found the string 'relu'"));
    CHECK_THROWS_AS(pt::tree(1).as<double>(), pt::leaf_error);
    CHECK_THROWS_AS(pt::list({}).value(), pt::leaf_error);
    // A subtree handle does not know its path: the message claims none (no "at <root>").
    CHECK_THROWS_WITH(s.as_array(), "leaf access: expected an array leaf, found the string 'relu'");
}

TEST_CASE("tree: a tied position reads its source; a raw placeholder says to expand",
          "[tree][error]") {
    const auto lm = pt::share(
        pt::record("LM", {{"embed", pt::record("E", {{"weight", pt::array::ones({4, 2})}})},
                          {"head", pt::record("H", {{"weight", pt::array::ones({4, 2})}})}}),
        ".head.weight", ".embed.weight");
    // Through the tree: the tie's value (a subtree is self-contained, see submodel.hpp).
    CHECK(pt::same_storage(lm["head"]["weight"].as_array(), lm["embed"]["weight"].as_array()));
    // Storage (tree::child) holds the placeholder: reading it says how to get the value.
    try {
        (void)lm.child(0)["head"]["weight"].as_array();
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        const std::string what = e.what();
        CHECK(what.find("<root>") == std::string::npos);
        CHECK(what.find("a tie to .embed.weight") != std::string::npos);
        CHECK(what.find("pt::expand(tree)") != std::string::npos);
    }
    // Inside a tree operation the leaf's own path is known and named.
    try {
        (void)pt::tree_map([](const pt::tree& l) { return pt::tree(l.as_array()); },
                           pt::dict({{"a", pt::array::ones({1})}, {"s", "relu"}}));
        FAIL("expected leaf_error");
    } catch (const pt::leaf_error& e) {
        CHECK(e.path() == "['s']");
        CHECK_THAT(e.what(), Catch::StartsWith("leaf access (in tree_map): at ['s']: expected an "
                                               "array leaf, found the string 'relu'"));
    }
}

TEST_CASE("tree: containers and accessors", "[tree]") {
    const auto w = pt::array::ones({2, 2});
    const auto t = pt::dict({{"b", pt::list({1, 2})}, {"a", pt::tuple({w, "x"})}});
    CHECK(t.kind() == pt::node_kind::dict);
    CHECK(t.num_leaves() == 4);
    CHECK(t.num_nodes() == 7);
    CHECK(t.keys() == std::vector<std::string>{"b", "a"});
    CHECK(t["b"][1].as<std::int64_t>() == 2);
    CHECK(pt::same_storage(t["a"][0].as_array(), w));
    CHECK(t.at(pt::parse_path("['a'][1]")).as<std::string>() == "x");
    CHECK(t.contains(pt::parse_path("['b'][0]")));
    CHECK_FALSE(t.contains(pt::parse_path("['b'][2]")));
    CHECK(std::get<pt::dict_key>(t.entry(0)).key == "a"); // storage order is sorted
}

TEST_CASE("tree: bad paths name the longest valid prefix", "[tree][error]") {
    const auto t = pt::dict({{"layers", pt::list({pt::dict({{"w", 1}})})}});
    CHECK_THROWS_AS(t.at(pt::parse_path("['layers'][3]")), pt::path_error);
    CHECK_THROWS_WITH(
        t.at(pt::parse_path("['layers'][3]")),
        Catch::Contains("at ['layers']: expected a node with child [3], found a list of length 1"));
    CHECK_THROWS_WITH(t["nope"], Catch::Contains("<root>"));
    CHECK_THROWS_AS(t.child(5), pt::path_error);
}

TEST_CASE("tree: records carry fields and static metadata", "[tree]") {
    const auto lin = pt::record(
        "Linear", {{"weight", pt::array::zeros({4, 3})}, {"bias", pt::array::zeros({4})}},
        {{"in_features", 3}, {"out_features", 4}, {"act", "relu"}});
    CHECK(lin.record_name() == "Linear");
    CHECK(lin.keys() == std::vector<std::string>{"weight", "bias"});
    CHECK(lin["weight"].as_array().shape() == pt::shape_type{4, 3});
    CHECK(lin.static_field("in_features") == pt::static_value(3));
    CHECK(lin.static_field("act").to_string() == "'relu'");
    CHECK_THROWS_AS(lin.static_field("nope"), pt::path_error);
    CHECK(lin.num_leaves() == 2);
}

TEST_CASE("tree: duplicate keys and fields are structure errors", "[tree][error]") {
    CHECK_THROWS_AS(pt::dict({{"a", 1}, {"a", 2}}), pt::structure_error);
    CHECK_THROWS_WITH(pt::dict({{"a", 1}, {"a", 2}}), Catch::Contains("['a']"));
    CHECK_THROWS_AS(pt::record("R", {{"x", 1}}, {{"x", 2}}), pt::structure_error);
    CHECK_THROWS_AS(pt::record("R", {{"", 1}}), pt::structure_error);
}

TEST_CASE("tree: copies are O(1) and identity is observable", "[tree]") {
    const auto t = pt::list({pt::array::zeros({1000}), 1});
    const pt::tree u = t; // NOLINT(performance-unnecessary-copy-initialization)
    CHECK(pt::same_node(t, u));
    CHECK(t.identity() == u.identity());
    CHECK(pt::same_node(t[0], u[0]));
}

TEST_CASE("tree: a chain of 100,000 nested lists builds and dies without recursion",
          "[tree][deep]") {
    pt::tree t = 1.0;
    for (int i = 0; i < 100000; ++i)
        t = pt::list({t});
    CHECK(t.num_nodes() == 100001);
    CHECK(t.num_leaves() == 1);
    t = pt::tree{}; // destroys the chain
    CHECK(t.is_none());
}

TEST_CASE("tree: concurrent reads from many threads", "[tree][threads]") {
    std::vector<pt::tree> items;
    for (int i = 0; i < 200; ++i)
        items.push_back(pt::dict({{"w", pt::array::ones({4})}, {"i", i}}));
    const auto t = pt::list(items);
    std::vector<std::thread> threads;
    std::vector<std::size_t> counts(4);
    for (std::size_t k = 0; k < 4; ++k)
        threads.emplace_back([&, k] {
            for (int rep = 0; rep < 50; ++rep) {
                auto [leaves, def] = pt::flatten(t);
                const auto back = pt::unflatten(def, leaves);
                counts[k] += back.num_leaves();
            }
        });
    for (auto& th : threads)
        th.join();
    for (const auto c : counts)
        CHECK(c == 50 * 400);
}

TEST_CASE("tree: wide nodes (chunked children) behave like narrow ones", "[tree][wide]") {
    for (const std::size_t n : {std::size_t{63}, std::size_t{64}, std::size_t{65},
                                std::size_t{1000}, std::size_t{1025}}) {
        std::vector<pt::tree> items;
        std::vector<std::pair<std::string, pt::tree>> entries;
        for (std::size_t i = 0; i < n; ++i) {
            items.emplace_back(static_cast<std::int64_t>(i));
            entries.emplace_back("k" + std::to_string(100000 + i), static_cast<std::int64_t>(i));
        }
        const auto l = pt::list(items);
        const auto d = pt::dict(entries);
        REQUIRE(l.size() == n);
        CHECK(l.num_leaves() == n);
        CHECK(l[n - 1].as<std::int64_t>() == static_cast<std::int64_t>(n - 1));
        CHECK(d["k" + std::to_string(100000 + n / 2)].as<std::int64_t>() ==
              static_cast<std::int64_t>(n / 2));
        std::size_t count = 0;
        for (const auto& c : l.children())
            CHECK(c.as<std::int64_t>() == static_cast<std::int64_t>(count++));
        auto [leaves, def] = pt::flatten(l);
        CHECK(leaves[n - 2].as<std::int64_t>() == static_cast<std::int64_t>(n - 2));
        const auto back = pt::unflatten(def, leaves);
        CHECK(back[n - 1].as<std::int64_t>() == static_cast<std::int64_t>(n - 1));
        // Edits in several chunks at once; untouched children stay the same nodes.
        const auto e = pt::tree_at(std::vector<pt::path>{pt::path{pt::index_key{0}},
                                                         pt::path{pt::index_key{n - 1}},
                                                         pt::path{pt::index_key{n / 2}}},
                                   l, std::vector<pt::tree>{-1, -2, -3});
        CHECK(e[0].as<std::int64_t>() == -1);
        CHECK(e[n - 1].as<std::int64_t>() == -2);
        CHECK(e[n / 2].as<std::int64_t>() == -3);
        CHECK(e.size() == n);
        CHECK(pt::same_node(e[1], l[1]));
        CHECK(l[0].as<std::int64_t>() == 0);
        CHECK(pt::tree_diff(l, e).size() == 3);
    }
}

TEST_CASE("tree: concurrent first flattens race on the treedef cache safely", "[tree][threads]") {
    for (int round = 0; round < 20; ++round) {
        std::vector<pt::tree> items;
        for (int i = 0; i < 300; ++i)
            items.push_back(pt::record("L", {{"w", pt::array::ones({2})}, {"b", i}}));
        const auto t = pt::list(items); // wide (chunked), never flattened yet
        std::vector<std::thread> threads;
        std::vector<pt::treedef> defs(4);
        std::vector<std::int64_t> edited_values(4); // Catch2 v2 assertions are not thread-safe:
        for (std::size_t k = 0; k < 4; ++k)         // record in the threads, check after join
            threads.emplace_back([&, k] {
                defs[k] = pt::structure(t);
                const auto edited =
                    pt::tree_at(pt::path{pt::index_key{k * 50}, pt::field_key{"b"}}, t, -1);
                edited_values[k] = edited[k * 50]["b"].as<std::int64_t>();
            });
        for (auto& th : threads)
            th.join();
        for (const auto& d : defs)
            CHECK(d == defs[0]);
        for (const auto v : edited_values)
            CHECK(v == -1);
    }
}

TEST_CASE("tree, array, treedef: a moved-from object is in its default state, never null",
          "[tree][move]") {
    pt::tree t = pt::dict({{"w", pt::array::ones({2})}});
    const pt::tree moved = std::move(t);
    CHECK(moved.num_leaves() == 1);
    CHECK(t.is_none()); // NOLINT(bugprone-use-after-move): the point of the test
    CHECK(pt::describe(t) == "None");
    CHECK(pt::leaves(t).empty());
    t = moved; // assignable again
    CHECK(t.num_leaves() == 1);
    pt::tree u = pt::list({moved});
    pt::tree v;
    v = std::move(u);
    CHECK(u.is_none()); // NOLINT(bugprone-use-after-move)

    pt::array a = pt::array::ones({3});
    const pt::array b = std::move(a);
    CHECK(b.size() == 3);
    CHECK(a.shape().empty()); // NOLINT(bugprone-use-after-move): 0-d float32 0, like array()
    CHECK(a.item() == 0.0);
    CHECK(a.describe() == "f32[]");
    pt::array c;
    c = std::move(a);
    CHECK(a.size() == 1); // NOLINT(bugprone-use-after-move)

    auto [leaves, def] = pt::flatten(moved);
    const pt::treedef def2 = std::move(def);
    CHECK(def2.num_leaves() == 1);
    CHECK(def.num_leaves() == 1); // NOLINT(bugprone-use-after-move): the leaf structure `*`
    CHECK(def == pt::treedef());
    CHECK(pt::treedef() == pt::structure(pt::tree(pt::array::ones({1}))));
}
