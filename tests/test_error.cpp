// Tests for <paramtree/error.hpp>: one base, structured fields, the message shape.
#include <catch2/catch.hpp>

#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/paramtree.hpp>

#include <type_traits>

namespace pt = paramtree;

static_assert(std::is_base_of_v<std::runtime_error, pt::error>);
static_assert(std::is_base_of_v<pt::error, pt::structure_error>);
static_assert(std::is_base_of_v<pt::error, pt::path_error>);
static_assert(std::is_base_of_v<pt::error, pt::leaf_count_error>);
static_assert(std::is_base_of_v<pt::error, pt::leaf_error>);
static_assert(std::is_base_of_v<pt::error, pt::shape_error>);
static_assert(std::is_base_of_v<pt::error, pt::sharing_error>);
static_assert(std::is_base_of_v<pt::error, pt::format_error>);

TEST_CASE("error: fields and message", "[error]") {
    const pt::structure_error e("tree_map", "['a'][0]", "a list of length 2", "a list of length 3");
    CHECK(std::string(e.what()) ==
          "tree_map: at ['a'][0]: expected a list of length 2, found a list of length 3");
    CHECK(e.context() == "tree_map");
    CHECK(e.path() == "['a'][0]");
    CHECK(e.expected() == "a list of length 2");
    CHECK(e.found() == "a list of length 3");
    CHECK(std::string(pt::path_error("f", "", "x", "").what()) == "f: at <root>: expected x");
}

TEST_CASE("error: every kind is caught by the one base, with a path", "[error]") {
    const auto t = pt::dict({{"a", pt::list({1, 2})}});
    auto raises = [](auto&& f) {
        try {
            f();
        } catch (const pt::error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(raises([&] {
              (void)pt::tree_map([](const pt::tree& x, const pt::tree&) { return x; }, t,
                                 pt::dict({{"a", 1}}));
          }).starts_with("tree_map: structure mismatch: at ['a']"));
    CHECK(
        raises([&] { (void)t.at(pt::parse_path("['a'][5]")); }).starts_with("tree::at: at ['a']"));
    CHECK(raises([&] {
              (void)pt::unflatten(pt::structure(t), std::vector<pt::tree>{});
          }).find("expected 2 leaves") != std::string::npos);
    CHECK(raises([&] {
              (void)t["a"][0].as_array();
          }).find("expected an array leaf, found the integer 1") != std::string::npos);
    CHECK(raises([&] { (void)pt::array::zeros({2}).reshape({3}); }).starts_with("reshape"));
    CHECK(raises([&] {
              (void)pt::share(t, pt::parse_path("['a'][0]"), pt::parse_path("['a']"));
          }).find("a cycle") != std::string::npos);
    CHECK(raises([] { (void)pt::transform::parse("bogus"); }).starts_with("transform::parse"));
    CHECK(raises([] {
              (void)pt::load_arrays("/nonexistent/dir/x.safetensors");
          }).starts_with("open for reading: at /nonexistent/dir/x.safetensors"));
    CHECK(raises([] {
              (void)(pt::array::zeros({2}) * pt::array::zeros({3}));
          }).starts_with("multiply: at <root>: expected shapes that broadcast together"));
}

TEST_CASE("error: a broken invariant is an internal_error naming the file and line", "[error]") {
    // Metadata of the wrong kind for the node: what a bug in the library would produce.
    const pt::detail::node_meta none;
    try {
        (void)pt::detail::meta_of<pt::detail::dict_meta>(none);
        FAIL("expected internal_error");
    } catch (const pt::internal_error& e) {
        const std::string what = e.what();
        CHECK(what.find("paramtree internal error at") != std::string::npos);
        CHECK(what.find("test_error.cpp:") != std::string::npos); // the caller's line
        CHECK(what.find("please report it") != std::string::npos);
        CHECK(e.found() == "no metadata");
        // Relabelled like every paramtree error, it keeps its type.
        CHECK_THROWS_AS(pt::detail::rethrow_as(e, "outer", pt::path{}), pt::internal_error);
        CHECK_THROWS_AS(pt::detail::rethrow_as(e, "outer"), pt::internal_error);
    }
}

TEST_CASE("error: a place in a tree is kept as a path object too", "[error]") {
    const pt::tree t = pt::dict({{"layers", pt::list({pt::array{1.0}, pt::array{2.0}})}});
    // tree::at: the missing position as a path, equal to what keystr printed.
    try {
        (void)t.at(pt::parse_path("['layers'][5]"));
        FAIL("expected path_error");
    } catch (const pt::path_error& e) {
        REQUIRE(e.where());
        CHECK(pt::keystr(*e.where()) == e.path());
        // A caller prefixes it with where its tree sits, without parsing the text.
        CHECK(pt::keystr(pt::parse_path(".model") / *e.where()) == ".model" + e.path());
    }
    // The selector re-raises from the root with the path object it got from tree::at.
    try {
        (void)pt::selector(t)["layers"][7];
        FAIL("expected path_error");
    } catch (const pt::path_error& e) {
        // The place is the list that has no position 7 (the message says what it has).
        REQUIRE(e.where());
        CHECK(*e.where() == pt::parse_path("['layers']"));
        CHECK(e.path() == "['layers']");
    }
    // A dict key that needs escaping survives exactly (text would need quoting rules).
    const pt::tree odd = pt::dict({{"a'b]", pt::array{1.0}}});
    try {
        (void)odd.at(pt::path{pt::dict_key{"a'b]"}, pt::index_key{0}});
        FAIL("expected path_error");
    } catch (const pt::error& e) {
        // The leaf that has no children: its key as it is, no quoting to undo.
        REQUIRE(e.where());
        CHECK(*e.where() == pt::path{pt::dict_key{"a'b]"}});
        CHECK(pt::parse_path(e.path()) == *e.where());
    }
    // Places in a file are text only (a header field is not a tree position).
    try {
        (void)pt::load_arrays("/nonexistent/dir/x.safetensors");
        FAIL("expected io_error");
    } catch (const pt::io_error& e) {
        CHECK(!e.where());
        CHECK(e.path() == "/nonexistent/dir/x.safetensors");
    }
}
