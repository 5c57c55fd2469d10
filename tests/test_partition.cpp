// Tests for <paramtree/partition.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/print.hpp>

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
