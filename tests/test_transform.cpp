// Tests for <paramtree/transform.hpp>.
#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/transform.hpp>

namespace pt = paramtree;

TEST_CASE("transform: transpose, permute, reshape, scale and their adjoints", "[transform]") {
    const pt::array w{{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    const auto t = pt::transform::transpose();
    const auto wt = t.apply(w);
    CHECK(wt.shape() == pt::shape_type{3, 2});
    CHECK(wt.to_doubles() == std::vector<double>{1, 4, 2, 5, 3, 6});
    CHECK(t.adjoint(wt, w.shape()).to_doubles() == w.to_doubles());
    CHECK(t.to_string() == ".T");
    CHECK(t.output_shape({2, 3}) == pt::shape_type{3, 2});

    const auto x = pt::array::arange(24).reshape({2, 3, 4});
    const auto p = pt::transform::permute({2, 0, 1});
    const auto px = p.apply(x);
    CHECK(px.shape() == pt::shape_type{4, 2, 3});
    CHECK(px.item(1) == x.item(4)); // px[0,0,1] = x[0,1,0]
    CHECK(p.adjoint(px, x.shape()).to_doubles() == x.to_doubles());

    const auto r = pt::transform::reshape({6});
    CHECK(pt::same_storage(r.apply(w), w));
    CHECK(r.adjoint(r.apply(w), w.shape()).shape() == w.shape());

    const auto s = pt::transform::scale(0.5);
    CHECK(s.apply(w).item(5) == 3.0);
    CHECK(s.adjoint(w, w.shape()).item(0) == 0.5);
    CHECK(pt::transform().apply(w).bytes() == w.bytes());
}

TEST_CASE("transform: text round trip and errors", "[transform][error]") {
    for (const auto& t :
         {pt::transform::transpose(), pt::transform::permute({1, 0, 2}),
          pt::transform::reshape({4, 16}), pt::transform::scale(0.125), pt::transform()})
        CHECK(pt::transform::parse(t.to_string()) == t);
    CHECK(pt::to_string({pt::transform::transpose(), pt::transform::scale(2)}) == ".T*2");
    CHECK_THROWS_AS(pt::transform::parse(".X"), pt::format_error);
    CHECK_THROWS_AS(pt::transform::permute({0, 0}), pt::shape_error);
    CHECK_THROWS_AS(pt::transform::reshape({5}).apply(pt::array::zeros({2, 3})), pt::shape_error);
    CHECK_THROWS_AS(pt::transform::permute({1, 0}).apply(pt::array::zeros({2, 3, 4})),
                    pt::shape_error);
    CHECK_THROWS_AS(pt::transform::scale(2).apply(pt::array{std::int32_t{1}}), pt::shape_error);
}

TEST_CASE("transform: inside a gradient call the adjoint carries the gradient back, to second "
          "order",
          "[transform][autodiff]") {
    // f(w) = sum((w.T * 3) ⊙ c) for a fixed c: df/dw = 3 c.T, through the permute and the scale.
    const pt::array w{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
    const pt::array c{{1.0, -1.0}, {2.0, 0.5}, {-3.0, 4.0}};
    const auto chain = [](const pt::array& a) {
        return pt::transform::scale(3).apply(pt::transform::transpose().apply(a));
    };
    const pt::tree g =
        pt::grad([&](const pt::tree& t) { return pt::sum(chain(t.as_array()) * c); })(pt::tree(w));
    CHECK(pt::array_equal(g.as_array(), pt::transpose(c) * 3.0));
    // Second order: f(w) = sum(chain(w)²) has gradient 18 w and Hessian-vector product 18 v.
    const auto square = [&](const pt::tree& t) {
        const pt::array y = chain(t.as_array());
        return pt::sum(y * y);
    };
    const pt::array v{{0.5, -1.0, 2.0}, {1.0, 0.0, -0.25}};
    const pt::tree hv = pt::hvp(square, pt::tree(w), pt::tree(v));
    CHECK(pt::array_equal(hv.as_array(), v * 18.0, 1e-12, 1e-12));
    // Outside a gradient call nothing is recorded: the result carries no trace.
    CHECK_FALSE(chain(w).trace());
}
