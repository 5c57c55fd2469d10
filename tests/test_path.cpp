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
    CHECK(pt::keystr(pt::path{pt::dict_key{"it's"}}) == "['it\\'s']");
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
    CHECK_THROWS_AS(pt::parse_path("a"), pt::path_error);
    CHECK_THROWS_WITH(pt::parse_path("['a']x"), Catch::Contains("offset 5"));
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
