// Tests for <paramtree/dot.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/paramtree.hpp>

namespace pt = paramtree;

TEST_CASE("dot: a tied value is one node with two incoming edges", "[dot]") {
    const auto t =
        pt::share(pt::tuple({pt::record("Embedding", {{"weight", pt::array::zeros({10, 4})}}),
                             pt::record("Linear", {{"weight", pt::array::zeros({4, 10})},
                                                   {"bias", pt::array::zeros({4})}})}),
                  pt::parse_path("[1].weight"),
                  pt::source(pt::parse_path("[0].weight"), {pt::transform::transpose()}));
    const auto dot = pt::to_dot(t, "lm");
    CHECK(dot.starts_with("digraph \"lm\" {"));
    CHECK(dot.find("[label=\"f32[10,4]\", shape=box]") != std::string::npos);
    // n3 is the embedding weight: its normal edge from the Embedding node, and the tie edge.
    CHECK(dot.find("n2 -> n3 [label=\".weight\"]") != std::string::npos);
    CHECK(dot.find("n4 -> n3 [label=\".weight.T\", style=dashed") != std::string::npos);
    CHECK(dot.find("Shared") != std::string::npos);
}
