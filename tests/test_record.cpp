// Tests for <paramtree/record.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/error.hpp>
#include <paramtree/print.hpp>
#include <paramtree/record.hpp>

namespace pt = paramtree;

namespace test_models {
struct Linear {
    pt::array weight;
    std::optional<pt::array> bias;
    std::int64_t in_features = 0;
    std::int64_t out_features = 0;
};
struct MLP {
    std::vector<Linear> layers;
    std::string activation;
    std::map<std::string, double> extras;
    std::tuple<int, double> pair;
};
} // namespace test_models

template <>
struct pt::record_traits<test_models::Linear> {
    static constexpr std::string_view name = "Linear";
    static constexpr auto fields = std::tuple{pt::field("weight", &test_models::Linear::weight),
                                              pt::field("bias", &test_models::Linear::bias)};
    static constexpr auto static_fields =
        std::tuple{pt::field("in_features", &test_models::Linear::in_features),
                   pt::field("out_features", &test_models::Linear::out_features)};
};
template <>
struct pt::record_traits<test_models::MLP> {
    static constexpr std::string_view name = "MLP";
    static constexpr auto fields = std::tuple{pt::field("layers", &test_models::MLP::layers),
                                              pt::field("extras", &test_models::MLP::extras),
                                              pt::field("pair", &test_models::MLP::pair)};
    static constexpr auto static_fields =
        std::tuple{pt::field("activation", &test_models::MLP::activation)};
};

static_assert(pt::registered_record<test_models::Linear>);
static_assert(pt::tree_convertible<test_models::MLP>);
static_assert(!pt::tree_convertible<std::vector<void*>>);

TEST_CASE("record: registered structs round-trip", "[record]") {
    using namespace test_models;
    const MLP m{{Linear{pt::array::ones({3, 2}), pt::array::zeros({3}), 2, 3},
                 Linear{pt::array::ones({1, 3}), std::nullopt, 3, 1}},
                "gelu",
                {{"a", 1.5}},
                {4, 2.5}};
    const auto t = pt::to_tree(m);
    CHECK(pt::to_string(t) ==
          "MLP(layers=[Linear(weight=f32[3,2], bias=f32[3], in_features=2, out_features=3), "
          "Linear(weight=f32[1,3], bias=None, in_features=3, out_features=1)], extras={'a': 1.5}, "
          "pair=(4, 2.5), activation='gelu')");
    const auto back = pt::from_tree<MLP>(t);
    CHECK(back.activation == "gelu");
    CHECK(back.layers.size() == 2);
    CHECK(pt::same_storage(back.layers[0].weight, m.layers[0].weight));
    CHECK_FALSE(back.layers[1].bias.has_value());
    CHECK(back.layers[1].in_features == 3);
    CHECK(back.extras.at("a") == 1.5);
    CHECK(std::get<1>(back.pair) == 2.5);
}

TEST_CASE("record: from_tree errors name the path", "[record][error]") {
    using namespace test_models;
    const auto bad = pt::record(
        "MLP",
        {{"layers", pt::list({pt::record("Linear", {{"weight", "oops"}, {"bias", pt::none()}},
                                         {{"in_features", 1}, {"out_features", 1}})})},
         {"extras", pt::dict({})},
         {"pair", pt::tuple({1, 2.0})}},
        {{"activation", "relu"}});
    CHECK_THROWS_AS(pt::from_tree<MLP>(bad), pt::structure_error);
    CHECK_THROWS_WITH(
        pt::from_tree<MLP>(bad),
        Catch::Contains("at .layers[0].weight: expected an array leaf, found the string 'oops'"));
    CHECK_THROWS_WITH(pt::from_tree<Linear>(pt::list({})),
                      Catch::Contains("expected a Linear record"));
    const auto wrong_static =
        pt::record("Linear", {{"weight", pt::array{1.f}}, {"bias", pt::none()}},
                   {{"in_features", "x"}, {"out_features", 1}});
    CHECK_THROWS_AS(pt::from_tree<Linear>(wrong_static), pt::leaf_error);
}
