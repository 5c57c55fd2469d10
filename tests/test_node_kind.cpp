// Tests for <paramtree/node_kind.hpp>: every kind has its printed name, and the names are the
// ones the printers and error messages use.
#include <catch2/catch.hpp>

#include <paramtree/node_kind.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/tree.hpp>

namespace pt = paramtree;

TEST_CASE("node_kind: each kind's name, usable at compile time", "[node_kind]") {
    static_assert(pt::kind_name(pt::node_kind::none) == "None");
    CHECK(pt::kind_name(pt::node_kind::leaf) == "leaf");
    CHECK(pt::kind_name(pt::node_kind::list) == "list");
    CHECK(pt::kind_name(pt::node_kind::tuple) == "tuple");
    CHECK(pt::kind_name(pt::node_kind::dict) == "dict");
    CHECK(pt::kind_name(pt::node_kind::record) == "record");
    CHECK(pt::kind_name(pt::node_kind::shared) == "Shared");
    CHECK(pt::kind_name(pt::node_kind::tied) == "tied");
    // A value outside the enumeration (a corrupted byte) is "?", never out-of-bounds.
    CHECK(pt::kind_name(static_cast<pt::node_kind>(200)) == "?");
}

TEST_CASE("node_kind: trees report the kind of their root", "[node_kind]") {
    const pt::tree t = pt::dict({{"a", pt::array::ones({2})}, {"b", pt::array::ones({2})}});
    CHECK(t.kind() == pt::node_kind::dict);
    CHECK(t["a"].kind() == pt::node_kind::leaf);
    CHECK(pt::tree().kind() == pt::node_kind::none);
    const pt::tree tied = pt::share(t, pt::parse_path("['b']"), pt::parse_path("['a']"));
    CHECK(tied.kind() == pt::node_kind::shared);
}
