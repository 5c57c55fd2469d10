// paramtree tests — gradients checked against central finite differences in float64, through
// the public checker.
#pragma once

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
#include <paramtree/check_grad.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/random.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace gradcheck {

namespace pt = paramtree;

/// A float64 array of `shape` with uniform values in [lo, hi).
inline pt::array rand(std::uint32_t seed, pt::shape_type shape, double lo = -1.5, double hi = 1.5) {
    return pt::random::uniform(pt::random::fold_in(pt::random::make_key(1234), seed),
                               std::move(shape), lo, hi, pt::dtype::float64);
}

/// The tolerance of the suite's own checks: the test helpers below go through the public
/// checker (<paramtree/check_grad.hpp>) with it.
inline pt::grad_check_options tolerance(double tol) {
    pt::grad_check_options options;
    options.atol = tol;
    options.rtol = tol;
    return options;
}

/// Checks the gradient of the scalar `loss` at `params` (ties checked through their one
/// stored weight) against central differences.
inline void check_tree(const std::function<pt::array(const pt::tree&)>& loss,
                       const pt::tree& params, double tol = 1e-6) {
    const auto result = pt::check_grad(loss, std::tuple{params}, tolerance(tol));
    INFO(result.to_string());
    CHECK(result);
}

/// The elements of `a` as doubles, to compare with a literal list.
inline std::vector<double> vals(const pt::array& a) {
    return a.to_doubles();
}

/// The arrays a list function takes.
using xs_t = std::vector<pt::array>;
using list_function = std::function<pt::array(const xs_t&)>;

/// `f` of a vector of arrays as a function of one list tree (what the checker differentiates).
inline auto through_list(const list_function& f) {
    return [&f](const pt::tree& p) {
        std::vector<pt::array> xs;
        for (std::size_t i = 0; i < p.size(); ++i)
            xs.push_back(p[i].as_array());
        return f(xs);
    };
}

/// `params + v * by`, leaf by leaf (the pruned leaves, for a tree with ties).
inline pt::tree along(const pt::tree& params, const pt::tree& v, double by) {
    return pt::tree_map(
        [&](const pt::tree& x, const pt::tree& d) {
            return pt::tree(x.as_array() + d.as_array() * by);
        },
        params, v);
}

/// Checks the gradient of `f` (any output shape) w.r.t. each of `inputs`.
inline void check(const std::string& name, const list_function& f,
                  const std::vector<pt::array>& inputs, double tol = 1e-6) {
    const auto result = pt::check_grad(
        through_list(f), std::tuple{pt::list({inputs.begin(), inputs.end()})}, tolerance(tol));
    INFO(name << ": " << result.to_string());
    CHECK(result);
}

/// Checks second order for `f` (any output shape) at `inputs` (float64): the Hessian of
/// sum(f(xs) * w) times a random direction, from pt::hvp, against central differences of the
/// gradient along it; and the gradient of the directional derivative <grad, v> (a grad inside
/// a differentiated function) through the public checker.
inline void check_second_order(const std::string& name, const list_function& f,
                               const std::vector<pt::array>& inputs, double tol = 1e-6) {
    const auto apply = through_list(f);
    const pt::tree params = pt::list({inputs.begin(), inputs.end()});
    const pt::array w = rand(77, apply(params).shape(), 0.5, 1.5);
    auto loss = [&](const pt::tree& p) { return pt::sum(apply(p) * w); };
    std::vector<pt::tree> directions;
    for (std::size_t i = 0; i < inputs.size(); ++i)
        directions.emplace_back(rand(static_cast<std::uint32_t>(100 + i), inputs[i].shape()));
    const pt::tree v = pt::list(directions);
    const pt::tree hv = pt::hvp(loss, params, v);

    const double eps = 1e-5;
    const pt::tree up = pt::grad(loss)(along(params, v, eps));
    const pt::tree down = pt::grad(loss)(along(params, v, -eps));
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const pt::array fd = (up[i].as_array() - down[i].as_array()) / (2 * eps);
        INFO(name << ": Hessian-vector product, input " << i);
        CHECK(pt::array_equal(hv[i].as_array(), fd, std::max(tol, 1e-5), std::max(tol, 1e-5)));
    }
    auto directional = [&](const pt::tree& p) {
        const pt::tree g = pt::grad(loss)(p);
        pt::array total = pt::array::zeros({}, pt::dtype::float64);
        for (std::size_t i = 0; i < inputs.size(); ++i)
            total = total + pt::sum(g[i].as_array() * v[i].as_array());
        return total;
    };
    const auto result = pt::check_grad(directional, std::tuple{params}, tolerance(tol));
    INFO(name << " (gradient of <grad, v>): " << result.to_string());
    CHECK(result);
}

} // namespace gradcheck
