// Tests for <paramtree/diff.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/at.hpp>
#include <paramtree/diff.hpp>

namespace pt = paramtree;

TEST_CASE("diff: every difference with its path and kind", "[diff]") {
    const auto a = pt::dict({{"w", pt::array{1.f, 2.f}},
                             {"s", "x"},
                             {"l", pt::list({1, 2})},
                             {"d", pt::array{1.0}},
                             {"k", pt::array{{1.f}}},
                             {"n", 1}});
    const auto b = pt::dict({{"w", pt::array{1.f, 3.f}},
                             {"s", "x"},
                             {"l", pt::list({1})},
                             {"d", pt::array{1.f}},
                             {"k", pt::array{1.f}},
                             {"n", 1.0}});
    const auto diffs = pt::tree_diff(a, b);
    REQUIRE(diffs.size() == 5);
    CHECK(pt::keystr(diffs[0].where) == "['d']");
    CHECK(diffs[0].kind == pt::diff_kind::dtype);
    CHECK(diffs[1].kind == pt::diff_kind::shape);
    CHECK(diffs[2].kind == pt::diff_kind::structure);
    CHECK(diffs[2].left == "a list of length 2");
    CHECK(diffs[3].kind == pt::diff_kind::leaf_type);
    CHECK(pt::keystr(diffs[4].where) == "['w']");
    CHECK(diffs[4].kind == pt::diff_kind::value);
    CHECK(pt::diff_kind_name(diffs[4].kind) == "value");
}

TEST_CASE("diff: tree_equal with tolerance", "[diff]") {
    const auto a = pt::list({pt::array{1.0, 2.0}, 0.5});
    const auto b = pt::list({pt::array{1.0, 2.0 + 1e-9}, 0.5 + 1e-9});
    CHECK(pt::tree_equal(a, a));
    CHECK_FALSE(pt::tree_equal(a, b));
    CHECK(pt::tree_equal(a, b, {0, 1e-6}));
    CHECK_FALSE(pt::tree_equal(a, pt::tuple({pt::array{1.0, 2.0}, 0.5})));
}

TEST_CASE("diff: shared subtrees are skipped by identity", "[diff]") {
    std::vector<pt::tree> items;
    for (int i = 0; i < 1000; ++i)
        items.push_back(pt::dict({{"w", pt::array::ones({8})}}));
    const auto t = pt::list(items);
    const auto u =
        pt::tree_at(pt::path{pt::index_key{7}, pt::dict_key{"w"}}, t, pt::array::zeros({8}));
    const auto diffs = pt::tree_diff(t, u);
    REQUIRE(diffs.size() == 1);
    CHECK(pt::keystr(diffs[0].where) == "[7]['w']");
}
