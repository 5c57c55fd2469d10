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

/// Checks the gradient of `f` (any output shape) w.r.t. each of `inputs`.
inline void check(const std::string& name,
                  const std::function<pt::array(const std::vector<pt::array>&)>& f,
                  const std::vector<pt::array>& inputs, double tol = 1e-6) {
    auto through_list = [&](const pt::tree& p) {
        std::vector<pt::array> xs;
        for (std::size_t i = 0; i < p.size(); ++i)
            xs.push_back(p[i].as_array());
        return f(xs);
    };
    const auto result = pt::check_grad(
        through_list, std::tuple{pt::list({inputs.begin(), inputs.end()})}, tolerance(tol));
    INFO(name << ": " << result.to_string());
    CHECK(result);
}

} // namespace gradcheck
