// Tests for <paramtree/static_value.hpp>: the value kinds a record's static field holds, their
// Python-like text and equality.
#include <catch2/catch.hpp>

#include <paramtree/static_value.hpp>

#include <cstdint>
#include <string>

namespace pt = paramtree;

TEST_CASE("static_value: integers widen to int64, floats to double, text stays text",
          "[static_value]") {
    CHECK(pt::static_value(3).holds<std::int64_t>());
    CHECK(pt::static_value(std::uint8_t{3}).holds<std::int64_t>());
    CHECK(pt::static_value(true).holds<bool>()); // not an integer
    CHECK(pt::static_value(0.5f).holds<double>());
    CHECK(pt::static_value("gelu").holds<std::string>());
    CHECK(pt::static_value().holds<std::int64_t>()); // default: 0
    CHECK(std::get<double>(pt::static_value(0.5f).get()) == 0.5);
}

TEST_CASE("static_value: text and equality", "[static_value]") {
    CHECK(pt::static_value(64).to_string() == "64");
    CHECK(pt::static_value(0.5).to_string() == "0.5");
    CHECK(pt::static_value(true).to_string() == "true");
    CHECK(pt::static_value("gelu").to_string() == "'gelu'");
    CHECK(pt::static_value(2) == pt::static_value(std::int64_t{2}));
    CHECK(pt::static_value(2) != pt::static_value(2.0)); // kinds differ
    CHECK(pt::static_value("a") != pt::static_value("b"));
}
