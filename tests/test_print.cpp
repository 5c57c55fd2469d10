// Tests for <paramtree/print.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/print.hpp>
#include <paramtree/shared.hpp>

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

TEST_CASE("print: summary counts modules by type, their own parameters, and ties", "[print]") {
    const auto linear = [](std::size_t in, std::size_t out) {
        return pt::record(
            "Linear", {{"weight", pt::array::zeros({out, in})}, {"bias", pt::array::zeros({out})}});
    };
    const auto model = pt::share(
        pt::record("Net",
                   {{"embed", pt::record("Embedding", {{"weight", pt::array::zeros({10, 4})}})},
                    {"layers", pt::list({linear(4, 4), linear(4, 4), linear(4, 4)})},
                    {"scale", pt::array::ones({4})},
                    {"head", linear(4, 10)},
                    {"steps", pt::array::scalar<std::int64_t>(3)}}),
        ".head.weight", ".embed.weight");
    const std::string s = pt::summary(model);
    INFO(s);
    // 40 + 3 * 20 + 4 + 10 trained; the head's weight (40) is the embedding's.
    CHECK(s.starts_with("Net: 114 trained parameters in 9 arrays (154 if each use held a copy)\n"));
    CHECK(s.find("  Net            1               4\n") != std::string::npos);
    CHECK(s.find("  Embedding      1              40\n") != std::string::npos);
    CHECK(s.find("  Linear         4              70\n") != std::string::npos);
    CHECK(s.find("  tie: .head.weight is .embed.weight\n") != std::string::npos);
    // Outside any record, with big numbers grouped.
    const std::string d = pt::summary(pt::dict({{"w", pt::array::zeros({1000, 1000})}}));
    CHECK(d.starts_with("tree: 1,000,000 trained parameters in 1 arrays\n"));
    CHECK(d.find("(outside modules)      -       1,000,000") != std::string::npos);
}
