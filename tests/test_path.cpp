// Tests for <paramtree/path.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/path.hpp>

namespace pt = paramtree;

TEST_CASE("path: keystr and dotted text", "[path]") {
    const pt::path p = pt::path{} / pt::dict_key{"layers"} / 3 / pt::field_key{"weight"};
    CHECK(pt::keystr(p) == "['layers'][3].weight");
    CHECK(pt::dotted(p) == "layers.3.weight");
    CHECK(pt::keystr(pt::path{}).empty());
    CHECK(pt::display_path("") == "<root>");
    CHECK(pt::keystr(pt::path{pt::dict_key{"it's"}}) == "[\"it's\"]");
}

TEST_CASE("path: parse_path reads keystr back", "[path]") {
    const pt::path p{pt::dict_key{"a b"}, pt::index_key{12}, pt::field_key{"w_1"},
                     pt::dict_key{"x'y"}};
    CHECK(pt::parse_path(pt::keystr(p)) == p);
    CHECK(pt::parse_path("").empty());
    CHECK(pt::parse_path(".weight") == pt::path{pt::field_key{"weight"}});
}

TEST_CASE("path: malformed text is a path_error naming the offset", "[path][error]") {
    CHECK_THROWS_AS(pt::parse_path("['a'"), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("[x]"), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("."), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("a..b"), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("a."), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("[\"a']"), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("[99999999999999999999999]"), pt::path_error);
    CHECK_THROWS_AS(pt::parse_path("a.99999999999999999999999"), pt::path_error);
    CHECK_THROWS_WITH(pt::parse_path("['a']x"), Catch::Contains("offset 5"));
}

TEST_CASE("path: parse_path reads the dotted names checkpoints and load errors print", "[path]") {
    // Numbers are positions, identifiers fields; resolving against a tree also finds dict keys
    // of the same spelling (tested in test_at.cpp), so dotted(p) always reads back usable.
    CHECK(pt::parse_path("layers.1.bias") ==
          pt::path{pt::field_key{"layers"}, pt::index_key{1}, pt::field_key{"bias"}});
    CHECK(pt::parse_path(".layers.1") == pt::path{pt::field_key{"layers"}, pt::index_key{1}});
    CHECK(pt::parse_path("embed[0].weight") ==
          pt::path{pt::field_key{"embed"}, pt::index_key{0}, pt::field_key{"weight"}});
    // A segment that is neither can only be a dict key.
    CHECK(pt::parse_path("my-key.w") == pt::path{pt::dict_key{"my-key"}, pt::field_key{"w"}});
    CHECK(pt::parse_path("0") == pt::path{pt::index_key{0}});
}

TEST_CASE("path: parse_path takes double-quoted keys as Python prints them", "[path]") {
    CHECK(pt::parse_path("[\"layers\"][0]") == pt::path{pt::dict_key{"layers"}, pt::index_key{0}});
    CHECK(pt::parse_path("[\"it's\"]") == pt::path{pt::dict_key{"it's"}});
    CHECK(pt::parse_path("['say \\'hi\\'']") == pt::path{pt::dict_key{"say 'hi'"}});
    CHECK(pt::parse_path("[\"a\\\"b\"]") == pt::path{pt::dict_key{"a\"b"}});
    CHECK_THROWS_WITH(pt::parse_path("[\"abc"), Catch::Contains("a closing '\"'"));
}

TEST_CASE("path: prefixes and ordering", "[path]") {
    const pt::path p{pt::dict_key{"a"}, pt::index_key{1}};
    CHECK(p.prefix(1).is_prefix_of(p));
    CHECK(p.is_prefix_of(p / 2));
    CHECK_FALSE((p / 2).is_prefix_of(p));
    CHECK(pt::path{pt::index_key{0}} < pt::path{pt::index_key{1}});
    CHECK(p / p ==
          pt::path{pt::dict_key{"a"}, pt::index_key{1}, pt::dict_key{"a"}, pt::index_key{1}});
}
