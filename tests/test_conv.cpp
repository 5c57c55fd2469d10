// Tests for <paramtree/conv.hpp>: conv2d and conv1d against a direct loop, their gradients
// against finite differences (stride, padding, dilation, groups, bias), and shape errors.
#include "gradcheck.hpp"

#include <catch2/catch.hpp>

#include <paramtree/check_grad.hpp>
#include <paramtree/conv.hpp>
#include <paramtree/error.hpp>
#include <paramtree/ops.hpp>

namespace pt = paramtree;
using gradcheck::rand;

namespace {

/// conv2d by its definition, one output element at a time.
std::vector<double> direct_conv2d(const pt::array& x, const pt::array& w, const pt::array& b,
                                  const pt::conv2d_options& o) {
    const auto xs = x.to_doubles(), ws = w.to_doubles(), bs = b.to_doubles();
    const std::size_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
    const std::size_t oc = w.shape()[0], cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
    const std::size_t og = oc / o.groups;
    const std::size_t oh = (h + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
    const std::size_t ow = (wd + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
    std::vector<double> y;
    for (std::size_t in = 0; in < n; ++in)
        for (std::size_t co = 0; co < oc; ++co)
            for (std::size_t i = 0; i < oh; ++i)
                for (std::size_t j = 0; j < ow; ++j) {
                    double s = bs[co];
                    for (std::size_t ci = 0; ci < cg; ++ci)
                        for (std::size_t a = 0; a < kh; ++a)
                            for (std::size_t bb = 0; bb < kw; ++bb) {
                                const long long r =
                                    static_cast<long long>(i * o.stride[0] + a * o.dilation[0]) -
                                    static_cast<long long>(o.padding[0]);
                                const long long q =
                                    static_cast<long long>(j * o.stride[1] + bb * o.dilation[1]) -
                                    static_cast<long long>(o.padding[1]);
                                if (r < 0 || q < 0 || r >= static_cast<long long>(h) ||
                                    q >= static_cast<long long>(wd))
                                    continue;
                                const std::size_t chan = co / og * cg + ci;
                                s += xs[((in * c + chan) * h + static_cast<std::size_t>(r)) * wd +
                                        static_cast<std::size_t>(q)] *
                                     ws[((co * cg + ci) * kh + a) * kw + bb];
                            }
                    y.push_back(s);
                }
    return y;
}

} // namespace

TEST_CASE("conv2d: values equal the definition for every option", "[conv]") {
    struct option_case {
        pt::shape_type x, w;
        pt::conv2d_options o;
    };
    const std::vector<option_case> cases{
        {{2, 3, 7, 6}, {4, 3, 3, 3}, {}},
        {{1, 2, 8, 8}, {3, 2, 5, 5}, {.padding = {2, 2}}},
        {{2, 4, 9, 10}, {6, 2, 3, 2}, {.stride = {2, 3}, .padding = {1, 0}, .groups = 2}},
        {{1, 3, 9, 9}, {3, 1, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 3}},
    };
    std::uint32_t seed = 10;
    for (const auto& c : cases) {
        const pt::array x = rand(seed++, c.x), w = rand(seed++, c.w), b = rand(seed++, {c.w[0]});
        const pt::array y = pt::conv2d(x, w, b, c.o);
        const auto want = direct_conv2d(x, w, b, c.o);
        const auto got = y.to_doubles();
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i)
            REQUIRE(got[i] == Approx(want[i]).epsilon(1e-12).margin(1e-12));
        // float32 agrees with float64 to float32 precision.
        const auto y32 = pt::conv2d(x.astype(pt::dtype::float32), w.astype(pt::dtype::float32),
                                    b.astype(pt::dtype::float32), c.o)
                             .to_doubles();
        for (std::size_t i = 0; i < got.size(); ++i)
            REQUIRE(y32[i] == Approx(want[i]).epsilon(1e-4).margin(1e-4));
    }
}

TEST_CASE("conv2d: gradients match finite differences", "[conv]") {
    const pt::conv2d_options options[] = {
        {},
        {.stride = {2, 1}, .padding = {1, 2}},
        {.dilation = {2, 1}, .groups = 2},
    };
    std::uint32_t seed = 30;
    for (const auto& o : options) {
        const pt::array x = rand(seed++, {2, 4, 6, 7});
        const pt::array w = rand(seed++, {4, 4 / o.groups, 3, 2});
        const pt::array b = rand(seed++, {4});
        auto with_bias = [&](const pt::array& xx, const pt::array& ww, const pt::array& bb) {
            return pt::conv2d(xx, ww, bb, o);
        };
        const auto r = pt::check_grad(with_bias, std::tuple{x, w, b});
        INFO(r.to_string());
        CHECK(r);
        auto no_bias = [&](const pt::array& xx, const pt::array& ww) {
            return pt::conv2d(xx, ww, o);
        };
        const auto r2 = pt::check_grad(no_bias, std::tuple{x, w});
        INFO(r2.to_string());
        CHECK(r2);
    }
}

TEST_CASE("conv1d: a conv2d over a height of 1, gradients included", "[conv]") {
    const pt::array x = rand(40, {2, 4, 11}), w = rand(41, {6, 2, 3}), b = rand(42, {6});
    const pt::conv1d_options o{.stride = 2, .padding = 1, .dilation = 2, .groups = 2};
    const pt::array y = pt::conv1d(x, w, b, o);
    CHECK(y.shape() == pt::shape_type{2, 6, 5});
    const pt::array y2 =
        pt::conv2d(pt::reshape(x, {2, 4, 1, 11}), pt::reshape(w, {6, 2, 1, 3}), b,
                   {.stride = {1, 2}, .padding = {0, 1}, .dilation = {1, 2}, .groups = 2});
    CHECK(y.to_doubles() == y2.to_doubles());
    auto f = [&](const pt::array& xx, const pt::array& ww, const pt::array& bb) {
        return pt::conv1d(xx, ww, bb, o);
    };
    const auto r = pt::check_grad(f, std::tuple{x, w, b});
    INFO(r.to_string());
    CHECK(r);
}

TEST_CASE("conv2d: shapes that do not fit are refused naming the operands", "[conv][errors]") {
    const auto x = pt::array::ones({2, 4, 8, 8});
    CHECK_THROWS_MATCHES(
        pt::conv2d(x, pt::array::ones({3, 4, 3})), pt::shape_error,
        Catch::Message("conv2d: at <root>: expected x [N, C, H, W] and weight "
                       "[O, C / groups, KH, KW], found f32[2,4,8,8] and f32[3,4,3]"));
    CHECK_THROWS_WITH(pt::conv2d(x, pt::array::ones({3, 3, 3, 3})),
                      Catch::Contains("a weight with C / groups = 4 input channels"));
    CHECK_THROWS_WITH(pt::conv2d(x, pt::array::ones({3, 2, 3, 3}), pt::conv2d_options{.groups = 2}),
                      Catch::Contains("groups (2) dividing"));
    CHECK_THROWS_WITH(pt::conv2d(x, pt::array::ones({4, 4, 3, 3}), pt::array::ones({3})),
                      Catch::Contains("a bias of shape [4]"));
    CHECK_THROWS_WITH(pt::conv2d(x, pt::array::ones({4, 4, 9, 3})),
                      Catch::Contains("an input at least 9 along the height"));
    CHECK_THROWS_WITH(
        pt::conv2d(x, pt::array::ones({4, 4, 3, 3}), pt::conv2d_options{.stride = {0, 1}}),
        Catch::Contains("a positive kernel, stride and dilation"));
    CHECK_THROWS_WITH(pt::conv2d(x, pt::array::ones({4, 4, 3, 3}, pt::dtype::float64)),
                      Catch::Contains("operands of one float dtype"));
    CHECK_THROWS_AS(pt::conv2d(pt::array::ones({1, 1, 3, 3}, pt::dtype::int32),
                               pt::array::ones({1, 1, 1, 1}, pt::dtype::int32)),
                    pt::shape_error);
    CHECK_THROWS_WITH(pt::conv1d(x, pt::array::ones({4, 4, 3})),
                      Catch::StartsWith("conv1d: at <root>: expected x [N, C, L]"));
}
