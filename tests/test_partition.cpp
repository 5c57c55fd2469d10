// Tests for <paramtree/partition.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/print.hpp>
#include <paramtree/shared.hpp>

namespace pt = paramtree;

namespace {
pt::tree model() {
    return pt::record("Model", {{"w", pt::array::ones({2, 2})},
                                {"ids", pt::array{std::int64_t{1}, std::int64_t{2}}},
                                {"act", "relu"},
                                {"scale", 0.5},
                                {"extra", pt::none()}});
}
} // namespace

TEST_CASE("partition: trainable vs the rest, with None holes", "[partition]") {
    const auto m = model();
    const auto [params, rest] = pt::partition(m, pt::is_float_array);
    CHECK(pt::to_string(params) == "Model(w=f32[2,2], ids=None, act=None, scale=None, extra=None)");
    CHECK(pt::to_string(rest) == "Model(w=None, ids=i64[2], act='relu', scale=0.5, extra=None)");
    const auto back = pt::combine({params, rest});
    CHECK(pt::tree_equal(back, m));
    CHECK(pt::same_node(back["w"], m["w"]));
}

TEST_CASE("partition: with paths, filters, three-way combine", "[partition]") {
    const auto m = model();
    const auto [named, others] = pt::partition(
        m, [](const pt::path& p, const pt::tree&) { return pt::keystr(p) == ".act"; });
    CHECK(named["act"].as<std::string>() == "relu");
    CHECK(pt::is_inexact(m["scale"]));
    CHECK_FALSE(pt::is_inexact(m["ids"]));
    CHECK(pt::is_array(m["ids"]));
    const auto f = pt::filter(m, pt::is_array);
    CHECK(f["act"].is_none());
    const auto [a, rest1] = pt::partition(m, pt::is_float_array);
    const auto [b, c] = pt::partition(rest1, pt::is_array);
    CHECK(pt::tree_equal(pt::combine({c, b, a}), m));
}

TEST_CASE("partition: combine of mismatched parts names the path", "[partition][error]") {
    CHECK_THROWS_AS(pt::combine({pt::list({1, pt::none()}), pt::list({pt::none(), 2, 3})}),
                    pt::structure_error);
    CHECK_THROWS_WITH(pt::combine({pt::dict({{"a", 1}}), pt::dict({{"b", 1}})}),
                      Catch::Contains("at <root>: expected a dict with keys ['a']"));
    CHECK(pt::combine({}).is_none());
}

TEST_CASE("partition: a path predicate that splits a tie group is an error unless told",
          "[partition][shared]") {
    const auto t = pt::share(pt::tuple({pt::record("E", {{"weight", pt::array::zeros({4, 2})}}),
                                        pt::record("L", {{"weight", pt::array::zeros({4, 2})},
                                                         {"bias", pt::array::zeros({4})}})}),
                             pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
    const auto head_only = [](const pt::path& p, const pt::tree&) {
        return pt::keystr(p).starts_with("[1]");
    };
    CHECK_THROWS_AS(pt::partition(t, head_only), pt::sharing_error);
    CHECK_THROWS_WITH(
        pt::partition(t, head_only),
        Catch::Contains(
            "partition would split a tie group: at [1].weight: expected the same answer as its "
            "source [0].weight (not selected), found selected"));
    const auto [any_head, any_rest] = pt::partition(t, head_only, pt::tie_policy::any);
    CHECK(any_head[0]["weight"].is_array()); // the group went with its tied position
    const auto [src_head, src_rest] = pt::partition(t, head_only, pt::tie_policy::source);
    CHECK(src_head[0]["weight"].is_none());
    const auto [all_head, all_rest] = pt::partition(t, head_only, pt::tie_policy::all);
    CHECK(all_head[0]["weight"].is_none());
    CHECK(all_head[1]["bias"].is_array());
    // Parts keep the tie and combine back.
    const auto back = pt::combine({any_head, any_rest});
    CHECK(pt::structure(back) == pt::structure(t));
    CHECK(pt::tree_equal(back, t));
    CHECK(pt::ties(back).size() == 1);
    // A value predicate cannot split a group: tied positions hold no leaves.
    const auto [floats, others] = pt::partition(t, pt::is_float_array);
    CHECK(floats.num_leaves() == 2);
}
