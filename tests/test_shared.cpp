// Tests for <paramtree/shared.hpp>: Shared, expand/contract, untie, ties, validation.
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

#include <random>

namespace pt = paramtree;

namespace {

pt::array randn(pt::shape_type shape, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist;
    return pt::array::build<float>(std::move(shape), [&](std::span<float> out) {
        for (auto& x : out)
            x = dist(gen);
    });
}

// Equinox's LanguageModel: (Embedding(weight [V, D]), Linear(weight [V, D], bias [V])).
pt::tree embedding_and_linear(std::size_t vocab = 10, std::size_t dim = 4) {
    const auto embedding = pt::record("Embedding", {{"weight", randn({vocab, dim}, 1)}});
    const auto linear = pt::record(
        "Linear", {{"weight", randn({vocab, dim}, 2)}, {"bias", pt::array::zeros({vocab})}});
    return pt::tuple({embedding, linear});
}

pt::tree tied_lm() {
    return pt::share(
        embedding_and_linear(), [](pt::selector s) { return s[1]["weight"]; },
        [](pt::selector s) { return s[0]["weight"]; });
}

} // namespace

TEST_CASE("shared: construction prunes, expansion reinserts the same handle", "[shared]") {
    const auto untied = embedding_and_linear();
    const auto lm = pt::share(untied, pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
    CHECK(lm.kind() == pt::node_kind::shared);
    CHECK(untied.num_leaves() == 3);
    CHECK(lm.num_leaves() == 2); // embedding.weight and linear.bias: the tied weight is pruned
    CHECK(pt::to_string(lm) ==
          "Shared((Embedding(weight=f32[10,4]), Linear(weight=@0.weight, bias=f32[10])))");
    const auto full = pt::expand(lm);
    CHECK(full.kind() == pt::node_kind::tuple);
    CHECK(pt::same_storage(full[0]["weight"].as_array(), full[1]["weight"].as_array()));
    CHECK(pt::same_storage(full[0]["weight"].as_array(), untied[0]["weight"].as_array()));
    CHECK(pt::same_node(full[1]["bias"], untied[1]["bias"]));
    CHECK(pt::structure(full) == pt::structure(untied));
    // Paths go through the Shared node as if it were not there.
    CHECK(lm[1]["bias"].as_array().shape() == pt::shape_type{10});
    // A tied position reads as its source's value; storage (child) holds the placeholder.
    CHECK(pt::same_storage(lm[1]["weight"].as_array(), lm[0]["weight"].as_array()));
    CHECK(lm.child(0)[1]["weight"].kind() == pt::node_kind::tied);
}

TEST_CASE("shared: share and tie take path text, keystr or dotted", "[shared][path]") {
    const auto untied = embedding_and_linear();
    const auto by_path =
        pt::share(untied, pt::parse_path("[1].weight"), pt::parse_path("[0].weight"));
    const auto by_text = pt::share(untied, "[1].weight", "0.weight");
    CHECK(pt::to_string(by_text) == pt::to_string(by_path));
    const auto tied = pt::tie(untied, "1.weight", "[0].weight");
    CHECK(pt::to_string(tied) == pt::to_string(by_path));
    // Dotted names that reach dict keys are stored as the tree spells them.
    const auto d = pt::dict({{"embed", untied[0]}, {"head", untied[1]}});
    const auto dt = pt::tie(d, std::vector<std::string>{"head.weight"},
                            std::vector<std::string>{"embed.weight"});
    REQUIRE(pt::ties(dt).size() == 1);
    CHECK(pt::keystr(pt::ties(dt)[0].tied) == "['head'].weight");
    CHECK(pt::keystr(pt::ties(dt)[0].source) == "['embed'].weight");
    CHECK_THROWS_AS(pt::tie(d, "head.weigth", "embed.weight"), pt::path_error);
}

TEST_CASE("shared: a transposing get", "[shared]") {
    const auto embedding = pt::record("Embedding", {{"weight", randn({10, 4}, 1)}});
    const auto linear = pt::record(
        "Linear", {{"weight", pt::array::zeros({4, 10})}, {"bias", pt::array::zeros({4})}});
    const auto lm =
        pt::share(pt::tuple({embedding, linear}), pt::parse_path("[1].weight"),
                  pt::source(pt::parse_path("[0].weight"), {pt::transform::transpose()}));
    CHECK(pt::to_string(lm) == "Shared((Embedding(weight=f32[10,4]), "
                               "Linear(weight=@0.weight.T, bias=f32[4])))");
    const auto full = pt::expand(lm);
    const auto& w = full[0]["weight"].as_array();
    const auto& wt = full[1]["weight"].as_array();
    CHECK(wt.shape() == pt::shape_type{4, 10});
    CHECK(wt.item(1 * 10 + 3) == w.item(3 * 4 + 1)); // wt[1,3] == w[3,1]
}

TEST_CASE("shared: flatten / map / unflatten keep the tie", "[shared]") {
    const auto lm = tied_lm();
    auto [leaves, def] = pt::flatten(lm);
    REQUIRE(leaves.size() == 2);
    CHECK(def.to_string() ==
          "treedef(Shared((Embedding(weight=*), Linear(weight=@0.weight, bias=*))))");
    // One "optimizer step" on the pruned leaves: the tied position sees the one new value.
    const auto stepped = pt::tree_map(
        [](const pt::tree& l) { return pt::array::full(l.as_array().shape(), 3.0); }, lm);
    const auto full = pt::expand(stepped);
    CHECK(full[1]["weight"].as_array().item(0) == 3.0);
    CHECK(pt::same_storage(full[0]["weight"].as_array(), full[1]["weight"].as_array()));
    const auto rebuilt = pt::unflatten(def, leaves);
    CHECK(pt::tree_equal(rebuilt, lm));
    // A tree with another tie pattern does not map together with this one.
    CHECK_THROWS_AS(pt::tree_map([](const pt::tree& a, const pt::tree&) { return a; }, lm,
                                 embedding_and_linear()),
                    pt::structure_error);
    CHECK_THROWS_WITH(
        pt::tree_map(
            [](const pt::tree& a, const pt::tree&) { return a; }, lm,
            pt::share(embedding_and_linear(), pt::parse_path("[1].weight"),
                      pt::source(pt::parse_path("[0].weight"), {pt::transform::scale(2)}))),
        Catch::Contains(
            "at [1].weight: expected a tie to [0].weight (as in tree 0), found a tie to "
            "[0].weight*2 in tree 1"));
    try {
        (void)pt::tree_map([](const pt::tree& a, const pt::tree&) { return a; }, lm,
                           pt::expand(lm));
    } catch (const pt::structure_error& e) {
        CHECK(e.path().empty()); // the root
        CHECK(e.expected() == "a Shared node (as in tree 0)");
    }
}

TEST_CASE("shared: contract sums tied values onto their source", "[shared]") {
    const auto lm = tied_lm();
    const auto full = pt::expand(lm);
    const auto ones =
        pt::tree_map([](const pt::tree& l) { return pt::array::ones(l.as_array().shape()); }, full);
    const auto g = pt::contract(lm, ones);
    CHECK(pt::structure(g) == pt::structure(lm));
    CHECK(g[0]["weight"].as_array().item(0) == 2.0); // used twice
    CHECK(g[1]["bias"].as_array().item(0) == 1.0);

    // A transposed tie's gradient is transposed back before it is added.
    const auto embedding = pt::record("E", {{"w", pt::array::zeros({3, 2})}});
    const auto lin = pt::record("L", {{"w", pt::array::zeros({2, 3})}});
    const auto t = pt::share(pt::list({embedding, lin}), pt::parse_path("[1].w"),
                             pt::source(pt::parse_path("[0].w"), {pt::transform::transpose()}));
    const auto expanded_grads =
        pt::list({pt::record("E", {{"w", pt::array{{1.f, 2.f}, {3.f, 4.f}, {5.f, 6.f}}}}),
                  pt::record("L", {{"w", pt::array{{10.f, 20.f, 30.f}, {40.f, 50.f, 60.f}}}})});
    const auto c = pt::contract(t, expanded_grads);
    CHECK(c[0]["w"].as_array().to_doubles() == std::vector<double>{11, 42, 23, 54, 35, 66});
    CHECK_THROWS_AS(pt::contract(t, pt::list({1, 2})), pt::structure_error);

    // A value of the wrong shape is an error naming its place, tied or not (it was once
    // returned as the leaf's gradient, of the wrong shape).
    const auto wrong = [&](pt::array e_w, pt::array l_w) {
        return pt::list(
            {pt::record("E", {{"w", std::move(e_w)}}), pt::record("L", {{"w", std::move(l_w)}})});
    };
    const pt::tree plain = pt::list({embedding, lin}); // no tie
    const auto message = [](auto f) {
        try {
            (void)f();
        } catch (const pt::leaf_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string untied = message([&] {
        return pt::contract(plain, wrong(pt::array::zeros({3, 2}), pt::array::zeros({3, 2})));
    });
    CHECK_THAT(untied, Catch::Contains("[1].w") && Catch::Contains("f32[2,3]") &&
                           Catch::Contains("f32[3,2]"));
    const std::string tied = message([&] {
        return pt::contract(t, wrong(pt::array::zeros({3, 2}), pt::array::zeros({3, 3})));
    });
    CHECK_THAT(tied, Catch::Contains("contract") && Catch::Contains("[1].w"));
    CHECK_THROWS_AS(
        pt::contract(t, wrong(pt::array::zeros({3, 2}, pt::dtype::float64), lin["w"].as_array())),
        pt::leaf_error);
}

TEST_CASE("shared: one block applied N times needs one Shared", "[shared]") {
    std::vector<pt::tree> blocks;
    for (int i = 0; i < 6; ++i)
        blocks.push_back(pt::record("Block", {{"w", randn({8, 8}, 10 + static_cast<unsigned>(i))},
                                              {"b", pt::array::zeros({8})}}));
    std::vector<pt::path> where;
    for (std::size_t i = 1; i < 6; ++i)
        where.push_back(pt::path{pt::index_key{i}});
    const auto t = pt::share(pt::list(blocks), where, pt::path{pt::index_key{0}});
    CHECK(t.num_leaves() == 2);
    const auto counts = pt::count_parameters(t);
    CHECK(counts.arrays == 2);
    CHECK(counts.elements == 72);
    CHECK(counts.expanded_arrays == 12);
    CHECK(counts.expanded_elements == 6 * 72);
    const auto full = pt::expand(t);
    for (std::size_t i = 1; i < 6; ++i)
        CHECK(pt::same_node(full[i], full[0])); // whole block shared
    const auto groups = pt::tie_groups(t);
    REQUIRE(groups.size() == 1);
    CHECK(pt::keystr(groups[0].source) == "[0]");
    CHECK(groups[0].tied.size() == 5);
    const auto g = pt::contract(
        t, pt::tree_map([](const pt::tree& l) { return pt::array::ones(l.as_array().shape()); },
                        full));
    CHECK(g[0]["w"].as_array().item(0) == 6.0);
}

TEST_CASE("shared: ties lists every tie with full paths", "[shared]") {
    const auto model = pt::record("Model", {{"lm", tied_lm()}, {"other", 1}});
    const auto all = pt::ties(model);
    REQUIRE(all.size() == 1);
    CHECK(pt::keystr(all[0].tied) == ".lm[1].weight");
    CHECK(pt::keystr(all[0].source) == ".lm[0].weight");
    CHECK(all[0].transforms.empty());
    CHECK(pt::expand(model)["lm"][1]["weight"].is_array());
}

TEST_CASE("shared: tree_at through a tied position updates the one shared value", "[shared]") {
    const auto lm = tied_lm();
    const auto updated =
        pt::tree_at(pt::parse_path("[1].weight"), lm, pt::array::full({10, 4}, 7.0));
    CHECK(updated[0]["weight"].as_array().item(0) == 7.0);              // written to the source
    CHECK(updated.child(0)[1]["weight"].kind() == pt::node_kind::tied); // still tied
    const auto full = pt::expand(updated);
    CHECK(full[1]["weight"].as_array().item(5) == 7.0);

    // Through a transposed tie, the value is transposed back.
    const auto t =
        pt::share(pt::list({pt::array{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}}, pt::array::zeros({3, 2})}),
                  pt::path{pt::index_key{1}},
                  pt::source(pt::path{pt::index_key{0}}, {pt::transform::transpose()}));
    const auto u =
        pt::tree_at(pt::path{pt::index_key{1}}, t, pt::array{{1.f, 4.f}, {2.f, 5.f}, {3.f, 7.f}});
    CHECK(u[0].as_array().to_doubles() == std::vector<double>{1, 2, 3, 4, 5, 7});
    const auto v = pt::tree_at(pt::path{pt::index_key{1}}, t, [](const pt::tree& old) {
        CHECK(old.as_array().shape() == pt::shape_type{3, 2}); // the transformed view
        return old;
    });
    CHECK(pt::tree_equal(v, t));
    CHECK_THROWS_AS(
        pt::tree_at(std::vector<pt::path>{pt::path{pt::index_key{0}}, pt::path{pt::index_key{1}}},
                    t, pt::array::zeros({2, 3})),
        pt::path_error);
}

TEST_CASE("shared: untie breaks a tie on purpose", "[shared]") {
    const auto lm = tied_lm();
    const auto loose = pt::untie(lm, pt::parse_path("[1].weight"));
    CHECK(loose.num_leaves() == 3);
    CHECK(pt::ties(loose).empty());
    const auto stepped =
        pt::tree_at(pt::parse_path("[1].weight"), loose, pt::array::zeros({10, 4}));
    CHECK(stepped[0]["weight"].as_array().item(0) != 0.0); // no longer follows
    CHECK_THROWS_AS(pt::untie(lm, pt::parse_path("[1].bias")), pt::sharing_error);
}

TEST_CASE("shared: bad ties are sharing errors naming the paths", "[shared][error]") {
    const auto t = embedding_and_linear();
    // counts
    CHECK_THROWS_WITH(
        pt::share(t, std::vector{pt::parse_path("[1].weight"), pt::parse_path("[1].bias")},
                  std::vector{pt::parse_path("[0].weight"), pt::parse_path("[0].weight"),
                              pt::parse_path("[0].weight")}),
        Catch::Contains("expected 2 get nodes (one per where node, or one for all), found 3"));
    // shape
    CHECK_THROWS_AS(pt::share(t, pt::parse_path("[1].bias"), pt::parse_path("[0].weight")),
                    pt::sharing_error);
    CHECK_THROWS_WITH(pt::share(t, pt::parse_path("[1].bias"), pt::parse_path("[0].weight")),
                      Catch::Contains("at [1].bias: expected f32[10] (the node being tied), found "
                                      "f32[10,4] from get [0].weight"));
    CHECK_THROWS_WITH(
        pt::share(t, pt::parse_path("[1].weight"),
                  pt::source(pt::parse_path("[0].weight"), {pt::transform::transpose()})),
        Catch::Contains("found f32[4,10] from get [0].weight.T"));
    // dtype
    const auto mixed = pt::list({pt::array::zeros({2}, pt::dtype::float64), pt::array::zeros({2})});
    CHECK_THROWS_WITH(pt::share(mixed, pt::path{pt::index_key{1}}, pt::path{pt::index_key{0}}),
                      Catch::Contains("expected f32[2] (the node being tied), found f64[2]"));
    // structure
    CHECK_THROWS_WITH(pt::share(t, pt::parse_path("[1]"), pt::parse_path("[0]")),
                      Catch::Contains("expected a Linear record"));
    // cycles
    CHECK_THROWS_WITH(pt::share(t, pt::parse_path("[0]"), pt::parse_path("[0].weight")),
                      Catch::Contains("inside it (a cycle)"));
    CHECK_THROWS_WITH(pt::share(t, pt::parse_path("[0].weight"), pt::parse_path("[0]")),
                      Catch::Contains("a cycle"));
    // paths that do not exist
    CHECK_THROWS_AS(pt::share(t, pt::parse_path("[2].weight"), pt::parse_path("[0].weight")),
                    pt::path_error);
    CHECK_THROWS_AS(pt::share(t, pt::parse_path("[1].weight"), pt::parse_path("[0].wieght")),
                    pt::path_error);
    // a get node that is itself a tie
    const auto lm = tied_lm();
    const auto three = pt::list({lm, pt::array::zeros({10, 4})});
    CHECK_THROWS_WITH(pt::share(three, pt::parse_path("[1]"), pt::parse_path("[0][1].weight")),
                      Catch::Contains("tie to its source instead"));
    CHECK_THROWS_AS(pt::share(t, std::vector<pt::path>{}, pt::parse_path("[0].weight")),
                    pt::sharing_error);
    CHECK_THROWS_AS(
        pt::share(t, std::vector{pt::parse_path("[1].weight"), pt::parse_path("[1].weight")},
                  pt::parse_path("[0].weight")),
        pt::sharing_error);
}

TEST_CASE("shared: callable gets compare by identity and cannot be contracted", "[shared]") {
    const auto t = embedding_and_linear();
    const pt::getter g([](const pt::tree& tr) { return tr[0]["weight"]; }, "embedding_weight");
    const auto a = pt::share(t, pt::parse_path("[1].weight"), g);
    const auto b = pt::share(t, pt::parse_path("[1].weight"), g);
    const auto c = pt::share(
        t, pt::parse_path("[1].weight"),
        pt::getter([](const pt::tree& tr) { return tr[0]["weight"]; }, "embedding_weight"));
    CHECK(pt::structure(a) == pt::structure(b));
    CHECK_FALSE(pt::structure(a) == pt::structure(c));
    CHECK(pt::to_string(a.child(0)[1]) == "Linear(weight=@embedding_weight(), bias=f32[10])");
    CHECK(pt::same_storage(pt::expand(a)[1]["weight"].as_array(), t[0]["weight"].as_array()));
    CHECK_THROWS_AS(pt::contract(a, pt::expand(a)), pt::sharing_error);
}

TEST_CASE("shared: a source is compared as the tree spells it", "[shared][error]") {
    const auto t =
        pt::dict({{"a", pt::dict({{"w", pt::array::ones({2})}})}, {"b", pt::array::zeros({2})}});
    // `.a.w` names the dict child ['a']['w']: a tie of that position to itself, or of ['a'] to
    // something inside it, is a cycle however the source is written.
    CHECK_THROWS_WITH(
        pt::share(t, pt::parse_path("['a']['w']"), pt::source(pt::parse_path(".a.w"))),
        Catch::Contains("(a cycle)"));
    CHECK_THROWS_WITH(pt::share(t, pt::parse_path("['a']"), pt::source(pt::parse_path(".a.w"))),
                      Catch::Contains("(a cycle)"));
    // A good tie keeps the tree's spelling of its source.
    const auto tied = pt::share(t, pt::parse_path("['b']"), pt::source(pt::parse_path("a.w")));
    REQUIRE(pt::ties(tied).size() == 1);
    CHECK(pt::keystr(pt::ties(tied)[0].source) == "['a']['w']");
    CHECK(pt::same_storage(pt::expand(tied)["b"].as_array(), t["a"]["w"].as_array()));
}

TEST_CASE("shared: Shared nodes nest and sit anywhere in a model", "[shared]") {
    const auto inner = tied_lm();
    const auto model = pt::record("Model", {{"a", inner}, {"b", pt::array::zeros({10, 4})}});
    // An outer tie whose source is inside the inner Shared node.
    const auto outer = pt::share(model, pt::parse_path(".b"), pt::parse_path(".a[0].weight"));
    CHECK(outer.num_leaves() == 2);
    const auto full = pt::expand(outer);
    CHECK(pt::same_storage(full["b"].as_array(), full["a"][0]["weight"].as_array()));
    CHECK(pt::same_storage(full["a"][1]["weight"].as_array(), full["a"][0]["weight"].as_array()));
    const auto g = pt::contract(
        outer, pt::tree_map([](const pt::tree& l) { return pt::array::ones(l.as_array().shape()); },
                            full));
    CHECK(g["a"][0]["weight"].as_array().item(0) == 3.0);
    // Each tie's source is named from the root, from its own scope: the inner one below .a.
    std::vector<std::string> listed;
    for (const auto& tie : pt::ties(outer))
        listed.push_back(pt::keystr(tie.tied) + " <- " + pt::keystr(tie.source));
    CHECK(listed == std::vector<std::string>{".a[1].weight <- .a[0].weight", ".b <- .a[0].weight"});
}

namespace {

// A random tree of dicts, lists, records and float arrays with shapes drawn from a small set,
// so that random pairs of leaves often have matching shapes.
pt::tree random_tree(std::mt19937& gen, int depth) {
    std::uniform_int_distribution<int> kind(0, depth > 0 ? 4 : 0);
    std::uniform_int_distribution<std::size_t> width(1, 4);
    static const std::vector<pt::shape_type> shapes{{3}, {2, 3}, {3, 2}, {4}};
    switch (kind(gen)) {
    case 1: {
        std::vector<pt::tree> items;
        for (std::size_t i = width(gen); i > 0; --i)
            items.push_back(random_tree(gen, depth - 1));
        return pt::list(items);
    }
    case 2: {
        std::vector<std::pair<std::string, pt::tree>> items;
        for (std::size_t i = width(gen); i > 0; --i)
            items.emplace_back("k" + std::to_string(i * 7 % 5 + i), random_tree(gen, depth - 1));
        return pt::dict(std::move(items));
    }
    case 3:
        return pt::record("R",
                          {{"w", random_tree(gen, depth - 1)}, {"b", random_tree(gen, depth - 1)}},
                          {{"n", depth}});
    default: {
        const auto& s =
            shapes[std::uniform_int_distribution<std::size_t>(0, shapes.size() - 1)(gen)];
        return randn(s, static_cast<unsigned>(gen()));
    }
    }
}

} // namespace

TEST_CASE("shared: random trees with random ties keep every tie through every operation",
          "[shared][property]") {
    std::mt19937 gen(1234);
    int tested = 0;
    for (int round = 0; round < 120; ++round) {
        const auto t = random_tree(gen, 4);
        // Named, not bound: clang 14 does not let the lambda below capture a binding.
        const auto leaves = pt::flatten_with_path(t).leaves;
        if (leaves.size() < 3) continue;
        // Pick a source and up to 3 targets among the leaves with the source's shape.
        std::uniform_int_distribution<std::size_t> pick(0, leaves.size() - 1);
        const std::size_t s = pick(gen);
        const auto& shape = leaves[s].second.as_array().shape();
        std::vector<pt::path> where;
        for (std::size_t i = 0; i < leaves.size() && where.size() < 3; ++i) {
            if (i == s || leaves[i].second.as_array().shape() != shape) continue;
            if (gen() % 2 == 0) where.push_back(leaves[i].first);
        }
        if (where.empty()) continue;
        ++tested;
        const auto tied = pt::share(t, where, leaves[s].first);
        // pruned leaf count = unique leaf count
        CHECK(tied.num_leaves() == leaves.size() - where.size());
        CHECK(pt::count_parameters(tied).expanded_arrays == leaves.size());
        // flatten -> unflatten keeps every tie (identity) and every value
        auto [pl, pdef] = pt::flatten(tied);
        const auto back = pt::expand(pt::unflatten(pdef, pl));
        for (const auto& w : where)
            CHECK(pt::same_storage(back.at(w).as_array(), back.at(leaves[s].first).as_array()));
        CHECK(pt::tree_equal(pt::expand(tied), pt::tree_map_with_path(
                                                   [&](const pt::path& p, const pt::tree& l) {
                                                       return std::find(where.begin(), where.end(),
                                                                        p) != where.end()
                                                                  ? t.at(leaves[s].first)
                                                                  : l;
                                                   },
                                                   t)));
        // flatten -> map -> unflatten -> expand: every tied position has the one new value
        const auto stepped = pt::expand(pt::tree_map(
            [](const pt::tree& l) {
                return pt::array::full(l.as_array().shape(), l.as_array().item(0) + 1);
            },
            tied));
        for (const auto& w : where) {
            CHECK(
                pt::same_storage(stepped.at(w).as_array(), stepped.at(leaves[s].first).as_array()));
            CHECK(stepped.at(w).as_array().item(0) ==
                  Approx(t.at(leaves[s].first).as_array().item(0) + 1).epsilon(1e-6));
        }
        // partition / combine keeps ties
        const auto [a, b] = pt::partition(tied, [&](const pt::tree&) { return gen() % 2 == 0; });
        const auto joined = pt::combine({a, b});
        CHECK(pt::structure(joined) == pt::structure(tied));
        CHECK(pt::ties(joined).size() == where.size());
        // contract of ones counts the uses of every source element
        const auto ones =
            pt::tree_map([](const pt::tree& l) { return pt::array::ones(l.as_array().shape()); },
                         pt::expand(tied));
        CHECK(pt::contract(tied, ones).at(leaves[s].first).as_array().item(0) ==
              static_cast<double>(where.size() + 1));
    }
    CHECK(tested > 25);
}

TEST_CASE("shared: a Shared node at the bottom of a deep chain", "[shared][deep]") {
    const auto lm = tied_lm();
    pt::tree t = lm;
    for (int i = 0; i < 50000; ++i)
        t = pt::list({t});
    const auto full = pt::expand(t);
    pt::tree cur = full;
    while (cur.kind() == pt::node_kind::list)
        cur = cur[0];
    CHECK(pt::same_storage(cur[0]["weight"].as_array(), cur[1]["weight"].as_array()));
    CHECK(pt::ties(t).size() == 1);
    auto [leaves, def] = pt::flatten(t);
    CHECK(leaves.size() == 2);
    CHECK(pt::contract(t, full).num_leaves() == 2);
}

TEST_CASE("shared: PyTorch linear2.weight = linear1.weight (seed 002)", "[shared][seed]") {
    const auto lin = [](unsigned seed) {
        return pt::record("Linear",
                          {{"weight", randn({4, 4}, seed)}, {"bias", randn({4}, seed + 1)}});
    };
    const auto model = pt::record("Model", {{"linear1", lin(1)}, {"linear2", lin(3)}});
    const auto tied =
        pt::tie(model, {pt::parse_path(".linear2.weight"), pt::parse_path(".linear2.bias")},
                {pt::parse_path(".linear1.weight"), pt::parse_path(".linear1.bias")});
    CHECK(tied.num_leaves() == 2); // fewer parameters
    const auto one =
        pt::tie(model, pt::parse_path(".linear2.weight"), pt::parse_path(".linear1.weight"));
    CHECK(one.num_leaves() == 3);
    // Training (one step on the pruned leaves) updates both modules.
    const auto after = pt::expand(pt::tree_map(
        [](const pt::tree& w) {
            return pt::array::full(w.as_array().shape(), w.as_array().item(0) - 1);
        },
        tied));
    CHECK(pt::tree_equal(after["linear1"], after["linear2"]));
    CHECK(pt::same_node(after["linear1"]["weight"], after["linear2"]["weight"]));
}

TEST_CASE("shared: Flax module reuse gives one params entry (seed 000)", "[shared][seed]") {
    const std::size_t n = 3, hidden = 4;
    const auto dense =
        pt::dict({{"kernel", randn({hidden, hidden}, 5)}, {"bias", randn({hidden}, 6)}});
    const auto params = pt::dict({{"params", pt::dict({{"shared", dense}})}});
    const auto unshared = pt::dict(
        {{"params", pt::dict({{"Dense_0", dense},
                              {"Dense_1", pt::tree_map(
                                              [](const pt::tree& w) {
                                                  return pt::array::zeros(w.as_array().shape());
                                              },
                                              dense)}})}});
    CHECK(params.num_leaves() == 2);
    CHECK(unshared.num_leaves() == 4);
    // relu(shared(relu(shared(x)))) with the kernel [in, out]; output flattened to N*hidden.
    const auto apply_dense = [](const pt::tree& d, const std::vector<float>& x, std::size_t rows) {
        const auto k = d["kernel"].as_array().values<float>();
        const auto b = d["bias"].as_array().values<float>();
        const std::size_t h = b.size();
        std::vector<float> y(rows * h);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < h; ++o) {
                float acc = b[o];
                for (std::size_t i = 0; i < h; ++i)
                    acc += x[r * h + i] * k[i * h + o];
                y[r * h + o] = std::max(acc, 0.f);
            }
        return y;
    };
    const auto input = randn({n, hidden}, 7); // keep the buffer alive: values() is a view
    const auto x = input.values<float>();
    const auto& shared = params["params"]["shared"];
    const auto out = pt::array::from_vector<float>(
        {n * hidden}, apply_dense(shared, apply_dense(shared, {x.begin(), x.end()}, n), n));
    CHECK(out.shape() == pt::shape_type{n * hidden});
    for (const double v : out.to_doubles())
        CHECK(v >= 0.0);
    // Building the two-Dense tree from one node only looks tied: share_aliases makes it real.
    const auto looks = pt::dict({{"Dense_0", dense}, {"Dense_1", dense}});
    CHECK(pt::share_aliases(looks).num_leaves() == 2);
}

TEST_CASE("shared: expand on a wide (chunked) node replaces only the tied children",
          "[shared][wide]") {
    std::vector<pt::tree> layers;
    for (unsigned i = 0; i < 200; ++i)
        layers.push_back(randn({2, 2}, 500 + i));
    const auto t = pt::list(layers);
    const auto tied =
        pt::share(t, std::vector{pt::path{pt::index_key{150}}, pt::path{pt::index_key{199}}},
                  pt::path{pt::index_key{3}});
    CHECK(tied.num_leaves() == 198);
    const auto full = pt::expand(tied);
    REQUIRE(full.size() == 200);
    CHECK(pt::same_storage(full[150].as_array(), t[3].as_array()));
    CHECK(pt::same_storage(full[199].as_array(), t[3].as_array()));
    for (std::size_t i :
         {std::size_t{0}, std::size_t{3}, std::size_t{149}, std::size_t{151}, std::size_t{198}})
        CHECK(pt::same_node(full[i], t[i]));
    const auto ones =
        pt::tree_map([](const pt::tree& l) { return pt::array::ones(l.as_array().shape()); }, full);
    CHECK(pt::contract(tied, ones)[3].as_array().item(0) == 3.0);
}

TEST_CASE("shared: a callable get that reads its own tied position is refused", "[shared]") {
    const auto t = embedding_and_linear();
    // At share time [1].weight is a value; in the pruned tree it is the tie's own placeholder.
    const pt::getter self([](const pt::tree& tr) { return tr[1]["weight"]; }, "self");
    CHECK_THROWS_AS(pt::share(t, pt::parse_path("[1].weight"), self), pt::sharing_error);
}

TEST_CASE("shared: a tie's source holds an array", "[shared]") {
    // A tie stands for parameters: a string, None or a subtree without arrays has none.
    const auto t = pt::list({pt::tree("relu"), pt::tree("relu"), pt::none(), pt::none()});
    CHECK_THROWS_AS(pt::share(t, "[1]", "[0]"), pt::sharing_error);
    CHECK_THROWS_AS(pt::share(t, "[3]", "[2]"), pt::sharing_error);
    const auto mixed = pt::list({pt::list({pt::tree("relu"), pt::array::ones({2})}),
                                 pt::list({pt::tree("relu"), pt::array::ones({2})})});
    CHECK(pt::ties(pt::share(mixed, "[1]", "[0]")).size() == 1);
}
