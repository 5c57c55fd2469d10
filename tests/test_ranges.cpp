// Tests for <paramtree/ranges.hpp>: the views walk exactly what flatten walks (order, paths,
// ties pruned), compose with range-v3 and std::ranges, and go as deep as any tree.
#include <catch2/catch.hpp>

#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/ranges.hpp>
#include <paramtree/record.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

#include <range/v3/algorithm/find_if.hpp>
#include <range/v3/numeric/accumulate.hpp>
#include <range/v3/view/transform.hpp>

#include <cmath>
#include <ranges>

namespace pt = paramtree;
namespace pv = paramtree::views;

static_assert(std::ranges::forward_range<pv::leaves_view>);
static_assert(std::ranges::view<pv::leaves_view>);
static_assert(std::ranges::forward_range<pv::leaves_with_path_view>);
static_assert(std::ranges::forward_range<pv::float_arrays_view>);
static_assert(std::ranges::forward_range<pv::nodes_view>);
static_assert(ranges::forward_range<pv::leaves_view>);
static_assert(ranges::view_<pv::float_arrays_view>);
static_assert(std::same_as<std::ranges::range_reference_t<pv::arrays_view>, const pt::array&>);

namespace {

/// Every node kind: records with statics, a dict (leaves in sorted key order), None, strings,
/// an empty list, a wide list (chunked storage), and a tie (pruned).
pt::tree mixed() {
    std::vector<pt::tree> wide;
    for (int i = 0; i < 100; ++i)
        wide.emplace_back(pt::array::full({1}, i));
    const pt::tree t = pt::record(
        "Model",
        {{"embed", pt::record("Emb", {{"weight", pt::array::ones({4, 2})}})},
         {"head", pt::dict({{"w", pt::array::zeros({4, 2})}, {"b", pt::array::zeros({4})}})},
         {"misc", pt::list({pt::tree{}, 3, "name", pt::list({}), 2.5,
                            pt::array::arange(3, pt::dtype::int64)})},
         {"wide", pt::list(wide)}},
        {{"dim", 2}});
    return pt::share(t, pt::parse_path(".head['w']"), pt::parse_path(".embed.weight"));
}

} // namespace

TEST_CASE("views: leaves are flatten's leaves, in flatten's order, ties pruned", "[ranges]") {
    const pt::tree t = mixed();
    const auto flat = pt::leaves(t);
    std::size_t i = 0;
    for (pv::leaf_ref l : pv::leaves(t)) {
        REQUIRE(i < flat.size());
        CHECK(pt::same_node(l.get(), flat[i]));
        ++i;
    }
    CHECK(i == flat.size());
    CHECK(std::ranges::distance(pv::leaves(t)) == static_cast<std::ptrdiff_t>(t.num_leaves()));
    // Paths are flatten_with_path's.
    const auto with_paths = pt::flatten_with_path(t).leaves;
    i = 0;
    for (auto [where, leaf] : pv::leaves_with_path(t)) {
        CHECK(where == with_paths[i].first);
        CHECK(pt::same_node(leaf.get(), with_paths[i].second));
        ++i;
    }
    CHECK(i == with_paths.size());
    // The filters: every array leaf, the float ones.
    std::size_t arrays = 0, floats = 0;
    for (const pt::array& a : pv::arrays(t)) {
        (void)a;
        ++arrays;
    }
    for (const pt::array& a : pv::float_arrays(t))
        floats += pt::is_inexact(a.dtype()) ? 1 : 0;
    CHECK(arrays == 1 + 1 + 1 + 100); // embed, head.b, arange, wide (head.w is tied)
    CHECK(floats == arrays - 1);
    // The tied position appears in the expanded variant.
    CHECK(std::ranges::distance(pv::leaves_expanded(t)) ==
          static_cast<std::ptrdiff_t>(pt::expand(t).num_leaves()));
    CHECK(pt::expand(t).num_leaves() == t.num_leaves() + 1);
    // Non-array leaves say what they are.
    const auto all = pv::leaves(t);
    const auto first_string = std::ranges::find_if(
        all, [](pv::leaf_ref l) { return std::holds_alternative<std::string>(l.value()); });
    REQUIRE(first_string != std::ranges::end(all));
    CHECK_THROWS_AS((*first_string).as_array(), pt::leaf_error);
}

TEST_CASE("views: nodes in pre-order with kinds and depths", "[ranges]") {
    const pt::tree t = pt::dict({{"a", pt::list({1, pt::tree{}})}, {"b", 2.0}});
    std::vector<std::pair<pt::node_kind, std::size_t>> seen;
    for (pv::node_ref n : pv::nodes(t))
        seen.emplace_back(n.kind(), n.depth());
    const std::vector<std::pair<pt::node_kind, std::size_t>> expected = {{pt::node_kind::dict, 0},
                                                                         {pt::node_kind::list, 1},
                                                                         {pt::node_kind::leaf, 2},
                                                                         {pt::node_kind::none, 2},
                                                                         {pt::node_kind::leaf, 1}};
    CHECK(seen == expected);
    // Every node of a tree with Shared, a placeholder and a wide (chunked) node.
    const pt::tree m = mixed();
    CHECK(std::ranges::distance(pv::nodes(m)) ==
          static_cast<std::ptrdiff_t>(pt::structure(m).num_nodes()));
    const auto ns = pv::nodes(m);
    CHECK((*std::ranges::begin(ns)).kind() == pt::node_kind::shared);
}

TEST_CASE("views: a node inside a Shared node gets as the sub-model tree::at gives", "[ranges]") {
    // The decoder's embedding is tied to the encoder's: the decoder seen through the view
    // holds no placeholder without its scope (issue 27 row 1, through views::nodes).
    const auto vec = [](float a, float b) { return pt::array::from_vector<float>({2}, {a, b}); };
    const auto enc = pt::record("Enc", {{"embed", vec(1, 2)}, {"w", vec(3, 3)}});
    const auto dec = pt::record("Dec", {{"embed", vec(0, 0)}, {"w", vec(4, 4)}});
    const pt::tree m = pt::share(pt::record("Seq2Seq", {{"encoder", enc}, {"decoder", dec}}),
                                 ".decoder.embed", ".encoder.embed");
    std::size_t checked = 0;
    for (const pv::node_ref n : pv::nodes(m)) {
        const pt::tree sub = n.get();
        REQUIRE_NOTHROW(pt::expand(sub));
        if (n.record_name() == "Dec") {
            CHECK(pt::tree_equal(sub, m["decoder"]));
            CHECK(pt::tree_equal(pt::expand(sub)["embed"], pt::expand(m)["encoder"]["embed"]));
            ++checked;
        }
        if (n.kind() == pt::node_kind::tied) {
            CHECK(pt::tree_equal(sub, m["encoder"]["embed"]));
            ++checked;
        }
    }
    CHECK(checked == 2);
}

TEST_CASE("views: zip_leaves pairs trees of one structure and names a mismatch", "[ranges]") {
    const pt::tree params = pt::dict({{"w", pt::array{1.f, 2.f}}, {"b", pt::array{3.f}}});
    const pt::tree grads = pt::dict({{"w", pt::array{0.5f, 0.5f}}, {"b", pt::array{1.f}}});
    double dot = 0;
    for (auto [p, g] : pv::zip_leaves(params, grads)) {
        const auto pv_ = p.as_array().to_doubles(), gv = g.as_array().to_doubles();
        for (std::size_t i = 0; i < pv_.size(); ++i)
            dot += pv_[i] * gv[i];
    }
    CHECK(dot == 1.5 + 3.0);
    const pt::tree other = pt::dict({{"w", pt::array{1.f}}, {"c", pt::array{1.f}}});
    try {
        (void)pv::zip_leaves(params, grads, other);
        FAIL("no error");
    } catch (const pt::structure_error& e) {
        CHECK(std::string(e.what()).starts_with("zip_leaves: structure mismatch"));
        CHECK(std::string(e.what()).find("in tree 2") != std::string::npos);
    }
}

TEST_CASE("views: compose with range-v3 pipelines", "[ranges]") {
    const pt::tree t = mixed();
    const std::size_t count = ranges::accumulate(
        pv::float_arrays(t) | ranges::views::transform(&pt::array::size), std::size_t{0});
    std::size_t expected = 0;
    for (const auto& l : pt::leaves(t))
        if (l.is_array() && pt::is_inexact(l.as_array().dtype())) expected += l.as_array().size();
    CHECK(count == expected);
    // The first leaf holding a NaN, with its path.
    const pt::tree g = pt::dict({{"a", pt::array{1.f}}, {"b", pt::array{std::nanf("")}}});
    const auto walk = pv::leaves_with_path(g);
    auto bad = ranges::find_if(walk, [](const pv::path_and_leaf& e) {
        if (!e.leaf.is_array()) return false;
        for (const double v : e.leaf.as_array().to_doubles())
            if (!std::isfinite(v)) return true;
        return false;
    });
    REQUIRE(bad != ranges::end(walk));
    CHECK(pt::keystr((*bad).where) == "['b']");
}

TEST_CASE("views: a 1,000,000-deep chain iterates; a view keeps its tree alive", "[ranges]") {
    pt::tree t = pt::array::ones({1});
    for (int i = 0; i < 1'000'000; ++i)
        t = pt::list({t, pt::tree{}});
    CHECK(std::ranges::distance(pv::leaves(t)) == 1);
    std::size_t depth = 0;
    for (auto [where, leaf] : pv::leaves_with_path(t))
        depth = where.size();
    CHECK(depth == 1'000'000);
    CHECK(std::ranges::distance(pv::nodes(t)) == 2'000'001);
    // The view holds the tree: the variable can go.
    auto view = pv::leaves(pt::dict({{"w", pt::array::ones({2})}}));
    CHECK((*view.begin()).as_array().size() == 2);
    // Iterators are forward: copies walk independently.
    const pt::tree two = pt::list({pt::array::ones({1}), pt::array::zeros({1})});
    const auto v = pv::leaves(two);
    auto a = v.begin();
    auto b = a;
    ++a;
    CHECK((*b).as_array().item() == 1.0);
    CHECK((*a).as_array().item() == 0.0);
    CHECK(a != b);
    ++b;
    CHECK(a == b);
}
