// Tests for <paramtree/print.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/print.hpp>

#include <sstream>

namespace pt = paramtree;

TEST_CASE("print: one-line short form", "[print]") {
    const auto lin = pt::record(
        "Linear", {{"weight", pt::array::zeros({64, 64})}, {"bias", pt::array::zeros({64})}},
        {{"in_features", 64}});
    CHECK(pt::to_string(lin) == "Linear(weight=f32[64,64], bias=f32[64], in_features=64)");
    CHECK(pt::to_string(pt::dict(
              {{"b", 1}, {"a", pt::tuple({2.5})}, {"c", true}, {"d", "s"}, {"e", pt::none()}})) ==
          "{'b': 1, 'a': (2.5,), 'c': true, 'd': 's', 'e': None}");
    CHECK(pt::to_string(pt::list({})) == "[]");
    CHECK(pt::to_string(pt::record("Empty", {})) == "Empty()");
    std::ostringstream os;
    os << pt::list({1, 2});
    CHECK(os.str() == "[1, 2]");
}

TEST_CASE("print: pformat breaks what does not fit and indents", "[print]") {
    std::vector<pt::tree> layers;
    for (int i = 0; i < 3; ++i)
        layers.push_back(pt::record(
            "Linear", {{"weight", pt::array::zeros({64, 64})}, {"bias", pt::array::zeros({64})}}));
    const auto m = pt::record("MLP", {{"layers", pt::list(layers)}}, {{"activation", "relu"}});
    CHECK(pt::pformat(m) == "MLP(\n"
                            "  layers=[\n"
                            "    Linear(weight=f32[64,64], bias=f32[64]),\n"
                            "    Linear(weight=f32[64,64], bias=f32[64]),\n"
                            "    Linear(weight=f32[64,64], bias=f32[64]),\n"
                            "  ],\n"
                            "  activation='relu',\n"
                            ")");
    CHECK(pt::pformat(pt::list({1, 2})) == "[1, 2]");
    CHECK(pt::pformat(m, {.width = 1000}) == pt::to_string(m));
}

TEST_CASE("print: deep chains print without recursion", "[print][deep]") {
    pt::tree t = 1;
    for (int i = 0; i < 100000; ++i)
        t = pt::list({t});
    const auto s = pt::to_string(t);
    CHECK(s.size() == 200001);
    const auto p = pt::pformat(t);
    CHECK(p.size() > s.size());
    CHECK(p.substr(0, 2) == "[\n");
}
