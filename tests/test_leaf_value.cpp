// Tests for <paramtree/leaf_value.hpp>: what `tree::value()` holds for each kind of leaf; an
// interior node has no value (a clear error, not a monostate to misread).
#include <catch2/catch.hpp>

#include <paramtree/leaf_value.hpp>
#include <paramtree/tree.hpp>

#include <cstdint>
#include <string>

namespace pt = paramtree;

TEST_CASE("leaf_value: each leaf kind; interior nodes have none", "[leaf_value]") {
    const pt::tree t = pt::dict({{"w", pt::array::ones({2})},
                                 {"on", true},
                                 {"lr", 0.5},
                                 {"name", std::string("mlp")},
                                 {"inner", pt::list({1.0})}});
    CHECK(std::holds_alternative<pt::array>(t["w"].value()));
    CHECK(std::get<bool>(t["on"].value()));
    CHECK(std::get<double>(t["lr"].value()) == 0.5);
    CHECK(std::get<std::string>(t["name"].value()) == "mlp");
    CHECK_THROWS_WITH(t["inner"].value(), Catch::Contains("expected a leaf, found a list"));
    CHECK_THROWS_WITH(t.value(), Catch::Contains("expected a leaf, found a dict"));
    // The variant's first alternative is the cheap one: a default leaf_value allocates nothing.
    CHECK(std::holds_alternative<std::monostate>(pt::leaf_value{}));
}
