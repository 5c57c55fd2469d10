// Tests for <paramtree/submodel.hpp>: self-contained subtrees of tied models (tree::at,
// operator[], selectors, extract), graft, and the scope rules they rest on (the five failures
// of issue 27 are the first cases).
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

#include <filesystem>

namespace pt = paramtree;

namespace {

pt::array vec(std::initializer_list<float> v) {
    return pt::array::from_vector<float>({v.size()}, std::vector<float>(v));
}

// A tied encoder-decoder: the decoder's embedding is the encoder's.
pt::tree seq2seq() {
    const auto enc = pt::record("Enc", {{"embed", vec({1, 2})}, {"w", vec({3})}});
    const auto dec = pt::record("Dec", {{"embed", vec({0, 0})}, {"w", vec({4})}});
    return pt::share(pt::record("Seq2Seq", {{"encoder", enc}, {"decoder", dec}}), ".decoder.embed",
                     ".encoder.embed");
}

std::filesystem::path temp_file(const char* name) {
    return std::filesystem::temp_directory_path() / name;
}

} // namespace

TEST_CASE("submodel: a subtree whose tie points outside it is materialised", "[submodel]") {
    // Issue 27, row 1: the decoder taken out of a tied encoder-decoder.
    const auto m = seq2seq();
    const pt::tree d = m["decoder"];
    CHECK(pt::to_string(d) == "Dec(embed=f32[2], w=f32[1])");
    CHECK(d["embed"].as_array().to_doubles() == std::vector<double>{1, 2});
    CHECK(pt::tree_equal(pt::expand(d), pt::expand(m)["decoder"]));
    // Saved on its own, it loads back, with and without a template.
    const auto file = temp_file("pt_submodel_decoder.safetensors");
    pt::save(file, d);
    CHECK(pt::tree_equal(pt::load_tree(file), d));
    CHECK(pt::tree_equal(pt::load(file, d), d));
    // A leaf through the tie reads the source's value.
    CHECK(m["decoder"]["embed"].as_array().to_doubles() == std::vector<double>{1, 2});
    CHECK(pt::selector(m)["decoder"]["embed"].value().as_array().to_doubles() ==
          std::vector<double>{1, 2});
}

TEST_CASE("submodel: a subtree holding a tie and its source keeps the tie", "[submodel]") {
    // Issue 27, row 5.
    const auto m =
        pt::share(pt::dict({{"blk", pt::tuple({vec({1}), vec({2})})}}), "['blk'][0]", "['blk'][1]");
    const pt::tree blk = m["blk"];
    CHECK(pt::to_string(blk) == "Shared((@1, f32[1]))");
    CHECK(pt::tree_equal(pt::expand(blk), pt::tuple({vec({2}), vec({2})})));
    const auto file = temp_file("pt_submodel_block.safetensors");
    pt::save(file, blk);
    CHECK(pt::tree_equal(pt::load_tree(file), blk));
    // Still one parameter: the gradient of both uses lands on the one leaf.
    CHECK(blk.num_leaves() == 1);
}

TEST_CASE("submodel: extract refuses a tie to outside when asked, naming it", "[submodel]") {
    const auto m = seq2seq();
    CHECK(pt::tree_equal(pt::extract(m, ".encoder", pt::outside_ties::refuse), m["encoder"]));
    try {
        (void)pt::extract(m, ".decoder", pt::outside_ties::refuse);
        FAIL("extract did not refuse");
    } catch (const pt::sharing_error& e) {
        CHECK(e.where() == pt::parse_path(".decoder.embed"));
        CHECK(std::string(e.what()).find("a tie to .encoder.embed outside it") !=
              std::string::npos);
    }
    CHECK_THROWS_AS(pt::extract(m, std::vector<std::string>{".encoder", ".decoder"}),
                    pt::path_error);
}

TEST_CASE("submodel: a transposed tie to outside is materialised transposed", "[submodel]") {
    const auto w = pt::array::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6});
    const auto t = pt::share(pt::list({w, pt::list({pt::array::zeros({3, 2})})}), "[1][0]",
                             pt::source(pt::parse_path("[0]"), {pt::transform::transpose()}));
    const pt::tree inner = t[1];
    CHECK(inner[0].as_array().shape() == pt::shape_type{3, 2});
    CHECK(inner[0].as_array().to_doubles() == std::vector<double>{1, 4, 2, 5, 3, 6});
}

TEST_CASE("submodel: graft puts a sub-model back and keeps the ties", "[submodel]") {
    const auto m = seq2seq();
    // extract then graft is the identity.
    CHECK(pt::tree_equal(pt::graft(m, ".decoder", pt::extract(m, ".decoder")), m));
    // A fine-tuned decoder: the tied position's new value is written to the tie's source.
    const auto tuned =
        pt::tree_map([](const pt::tree& x) { return pt::tree(x.as_array() * 2.0); }, m["decoder"]);
    const auto back = pt::graft(m, ".decoder", tuned);
    CHECK(pt::structure(back) == pt::structure(m));
    const auto e = pt::expand(back);
    CHECK(e["encoder"]["embed"].as_array().to_doubles() == std::vector<double>{2, 4});
    CHECK(pt::same_storage(e["encoder"]["embed"].as_array(), e["decoder"]["embed"].as_array()));
    CHECK(e["decoder"]["w"].as_array().to_doubles() == std::vector<double>{8});
    // A new encoder: the decoder's tie reads it (the source must still fit).
    const auto enc2 = pt::record("Enc", {{"embed", vec({7, 8})}, {"w", vec({9})}});
    CHECK(pt::expand(pt::graft(m, ".encoder", enc2))["decoder"]["embed"].as_array().item(1) == 8);
    try {
        (void)pt::graft(m, ".encoder", pt::record("Enc", {{"embed", vec({7, 8, 9})}}));
        FAIL("graft accepted a source of the wrong shape");
    } catch (const pt::sharing_error& e) {
        CHECK(e.where() == pt::parse_path(".encoder.embed"));
    }
    // A sub-model without the tied position cannot keep the tie.
    CHECK_THROWS_AS(pt::graft(m, ".decoder", pt::record("Dec", {{"w", vec({1})}})),
                    pt::sharing_error);
}

TEST_CASE("submodel: graft refuses two uses that give one source different values", "[submodel]") {
    const auto t = pt::share(pt::list({vec({1}), pt::list({vec({0}), vec({0})})}),
                             std::vector<std::string>{"[1][0]", "[1][1]"}, "[0]");
    CHECK_THROWS_AS(pt::graft(t, "[1]", pt::list({vec({5}), vec({6})})), pt::sharing_error);
    const auto same = pt::graft(t, "[1]", pt::list({vec({5}), vec({5})}));
    CHECK(pt::expand(same)[0].as_array().item(0) == 5);
}

TEST_CASE("scopes: a tie placed inside an inner Shared node reads the outer scope", "[submodel]") {
    // Issue 27, row 3: the inner Shared node merges into the new scope.
    const auto inner = pt::share(pt::list({vec({1, 2}), vec({3, 4}), vec({5, 6})}), "[0]", "[1]");
    const auto u = pt::share(pt::list({vec({7, 8}), vec({9, 10}), inner}), "[2][2]", "[1]");
    const auto e = pt::expand(u);
    CHECK(e[2][2].as_array().to_doubles() == std::vector<double>{9, 10}); // outer [1]
    CHECK(e[2][0].as_array().to_doubles() == std::vector<double>{3, 4});  // inner tie kept
    const auto ties = pt::ties(u);
    REQUIRE(ties.size() == 2);
    for (const auto& info : ties)
        CHECK(pt::tree_equal(e.at(info.tied), e.at(info.source)));
}

TEST_CASE("scopes: nested Shared nodes save and load as they are", "[submodel]") {
    // Issue 27, row 4.
    const auto s =
        pt::share(pt::share(pt::list({vec({1}), vec({2}), vec({3})}), "[1]", "[0]"), "[2]", "[0]");
    const auto file = temp_file("pt_submodel_nested.safetensors");
    pt::save(file, s);
    CHECK(pt::tree_equal(pt::load_tree(file), s));
    // A Shared node whose ties were all untied is kept too.
    const auto untied = pt::untie(pt::share(pt::list({vec({1}), vec({2})}), "[1]", "[0]"), "[1]");
    pt::save(file, untied);
    CHECK(pt::tree_equal(pt::load_tree(file), untied));
}

TEST_CASE("scopes: a source that holds a tie is filled before it is copied", "[submodel]") {
    const auto base = pt::list({pt::list({vec({1}), vec({2})}), pt::list({vec({3}), vec({4})}),
                                pt::list({vec({5}), vec({6})})});
    // [0][1] is tied to [2][1]; then [1] to [0], which holds that tie: legal, and expand fills
    // the source before copying it.
    const auto t = pt::share(pt::share(base, "[0][1]", "[2][1]"), "[1]", "[0]");
    const auto e = pt::expand(t);
    CHECK(e[1][1].as_array().item(0) == 6);
    CHECK(e[0][1].as_array().item(0) == 6);
    const auto file = temp_file("pt_submodel_chain.safetensors");
    pt::save(file, t);
    CHECK(pt::tree_equal(pt::load_tree(file), t));
}

TEST_CASE("submodel: a placeholder cut from its scope is an error, not a value", "[submodel]") {
    const auto m = seq2seq();
    // tree::child reads storage: the pruned content, placeholders and all.
    const pt::tree content = m.child(0);
    try {
        (void)pt::expand(content);
        FAIL("expand accepted a placeholder outside its scope");
    } catch (const pt::sharing_error& e) {
        CHECK(e.where() == pt::parse_path(".decoder.embed"));
    }
    CHECK_THROWS_AS(pt::save(temp_file("pt_submodel_dangling.safetensors"), content),
                    pt::sharing_error);
}

TEST_CASE("path: an entry past the end is a path_error", "[submodel]") {
    const auto p = pt::parse_path("a.b");
    CHECK(p.suffix(1) == pt::parse_path("b"));
    CHECK(p.suffix(5).empty());
    CHECK_THROWS_AS(p[2], pt::path_error);
}
