// paramtree — gradients checked against central finite differences.
#include <paramtree/autodiff.hpp>
#include <paramtree/check_grad.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/random.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace paramtree {

std::string grad_check_result::to_string() const {
    if (passed)
        return fmt::format("gradient check passed: {} element{}, max |error| {:.2g}", checked,
                           checked == 1 ? "" : "s", max_abs_error);
    return fmt::format("gradient check failed at {}: analytic {:.9g}, numeric {:.9g} (|error| "
                       "{:.2g}; {} element{} checked)",
                       worst_at, analytic, numeric, std::abs(analytic - numeric), checked,
                       checked == 1 ? "" : "s");
}

namespace detail {

namespace {

/// `argument 1 ['weight']`, or `argument 1` for an array argument.
std::string name(const argument_leaf& place) {
    return place.where.empty() ? fmt::format("argument {}", place.argument)
                               : fmt::format("argument {} {}", place.argument, keystr(place.where));
}

/// `[2, 1]`: element `flat` of an array of `shape`, as numpy would index it.
std::string element_index(const shape_type& shape, std::size_t flat) {
    if (shape.empty()) return "";
    std::vector<std::size_t> index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    return fmt::format("[{}]", fmt::join(index, ", "));
}

/// The elements of a leaf of `size` to check: all, or `limit` spread evenly (first and last
/// included).
std::vector<std::size_t> elements_to_check(std::size_t size, std::size_t limit) {
    std::vector<std::size_t> picked;
    if (limit == 0 || limit >= size) {
        for (std::size_t j = 0; j < size; ++j)
            picked.push_back(j);
        return picked;
    }
    for (std::size_t k = 0; k < limit; ++k)
        picked.push_back(limit == 1 ? 0 : k * (size - 1) / (limit - 1));
    return picked;
}

} // namespace

grad_check_result check_grad_leaves(const std::function<array(const std::vector<tree>&)>& f,
                                    const std::vector<tree>& leaves,
                                    const std::vector<argument_leaf>& places,
                                    const grad_check_options& options) {
    if (!(options.eps > 0) || !(options.atol >= 0) || !(options.rtol >= 0))
        throw_value(
            "check_grad", {}, "eps > 0, atol >= 0 and rtol >= 0",
            fmt::format("eps {}, atol {}, rtol {}", options.eps, options.atol, options.rtol));
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (!is_float_array(leaves[i])) continue;
        const array& x = leaves[i].as_array();
        if (x.dtype() != dtype::float64)
            throw_leaf(fmt::format("check_grad (argument {})", places[i].argument), places[i].where,
                       "a float64 array (in lower precision finite differences are lost to "
                       "rounding: pass x.astype(pt::dtype::float64))",
                       x.describe());
    }
    const array out = f(leaves);
    if (out.dtype() != dtype::float64)
        throw_shape("check_grad", "f to return a float64 array", out.describe());
    // A non-scalar output is checked through sum(f(x) * r): r's fixed random weights make
    // every row of the Jacobian count.
    const array r = out.size() == 1 ? array::ones(out.shape(), dtype::float64)
                                    : random::uniform(random::make_key(options.seed), out.shape(),
                                                      0.5, 1.5, dtype::float64);
    const auto scalar = [&](const std::vector<tree>& in) { return sum(f(in) * r); };
    const auto analytic_tree = grad([&](const tree& p) {
        std::vector<tree> in;
        in.reserve(p.size());
        for (std::size_t i = 0; i < p.size(); ++i)
            in.push_back(p[i]);
        return scalar(in);
    })(list(leaves));

    grad_check_result result;
    double worst_ratio = -1;
    std::vector<tree> moved = leaves;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (!is_float_array(leaves[i])) continue;
        const array& x = leaves[i].as_array();
        const std::vector<double> xs = x.to_doubles();
        const std::vector<double> a = analytic_tree[i].as_array().to_doubles();
        for (const std::size_t j : elements_to_check(xs.size(), options.max_elements_per_leaf)) {
            const auto at = [&](double delta) {
                auto values = xs;
                values[j] += delta;
                moved[i] = tree(array::from_vector<double>(x.shape(), values));
                return scalar(moved).item();
            };
            const double numeric = (at(options.eps) - at(-options.eps)) / (2 * options.eps);
            const double error = std::abs(a[j] - numeric);
            const double allowed = options.atol + options.rtol * std::abs(numeric);
            ++result.checked;
            result.max_abs_error = std::max(result.max_abs_error, error);
            const bool ok = error <= allowed; // false for NaN on either side
            double ratio = error / std::max(allowed, 1e-300);
            if (!ok && !(ratio > 1)) ratio = std::numeric_limits<double>::infinity();
            if (!ok) result.passed = false;
            if (ratio > worst_ratio) { // the element furthest outside (or nearest) its tolerance
                worst_ratio = ratio;
                result.worst_at = name(places[i]) + element_index(x.shape(), j);
                result.analytic = a[j];
                result.numeric = numeric;
            }
        }
        moved[i] = leaves[i];
    }
    return result;
}

} // namespace detail
} // namespace paramtree
