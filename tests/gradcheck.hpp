// paramtree tests — gradients checked against central finite differences in float64.
#pragma once

#include <catch2/catch.hpp>

#include <paramtree/autodiff.hpp>
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

/// The largest error of the analytic gradient of `loss` at `params` against central
/// differences, relative to the size of the numeric gradient: max|a - n| / max(1, max|n|).
inline double max_relative_error(const std::function<pt::array(const pt::tree&)>& loss,
                                 const pt::tree& params, double eps = 1e-6) {
    const auto [value, grads] = pt::value_and_grad(loss)(params);
    auto [leaves, def] = pt::flatten(params);
    const auto analytic = pt::leaves(grads);
    double worst = 0, scale = 1;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (!leaves[i].is_array()) continue;
        const pt::array x = leaves[i].as_array();
        const auto xs = x.to_doubles();
        const auto a = analytic.at(i).as_array().to_doubles();
        for (std::size_t j = 0; j < xs.size(); ++j) {
            auto at = [&](double delta) {
                auto moved = xs;
                moved[j] += delta;
                auto changed = leaves;
                changed[i] = pt::array::from_vector<double>(x.shape(), moved);
                // As value_and_grad does: the function sees the ties filled in.
                return loss(pt::expand(pt::unflatten(def, changed))).item();
            };
            const double numeric = (at(eps) - at(-eps)) / (2 * eps);
            worst = std::max(worst, std::abs(a[j] - numeric));
            scale = std::max(scale, std::abs(numeric));
        }
    }
    return worst / scale;
}

/// Checks the gradient of `f` (any output shape) w.r.t. each of `inputs`: the scalar checked
/// is sum(f(inputs) * r) for a fixed random `r`, which exercises the whole Jacobian.
inline void check(const std::string& name,
                  const std::function<pt::array(const std::vector<pt::array>&)>& f,
                  const std::vector<pt::array>& inputs, double tolerance = 1e-6) {
    const pt::array out = f(inputs);
    const pt::array r = rand(99, out.shape(), 0.5, 1.5);
    std::vector<pt::tree> items(inputs.begin(), inputs.end());
    auto loss = [&](const pt::tree& p) {
        std::vector<pt::array> xs;
        for (std::size_t i = 0; i < p.size(); ++i)
            xs.push_back(p[i].as_array());
        return pt::sum(f(xs) * r);
    };
    const double err = max_relative_error(loss, pt::list(items));
    INFO(name << ": relative error " << err);
    CHECK(err < tolerance);
}

} // namespace gradcheck
