// paramtree — named tie transforms: shapes, application, adjoints, text.
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/transform.hpp>

#include "compute/kernels.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

transform transform::transpose() {
    transform t;
    t.op_ = op::permute; // axes left empty: reverse whatever rank the input has
    return t;
}

transform transform::permute(std::vector<std::size_t> axes) {
    std::vector<std::size_t> sorted = axes;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i)
        if (sorted[i] != i)
            detail::throw_shape("transform::permute", "a permutation of 0..n-1",
                                fmt::format("({})", fmt::join(axes, ",")));
    transform t;
    t.op_ = op::permute;
    t.axes_ = std::move(axes);
    return t;
}

transform transform::reshape(shape_type shape) {
    transform t;
    t.op_ = op::reshape;
    t.shape_ = std::move(shape);
    return t;
}

transform transform::scale(double factor) {
    transform t;
    t.op_ = op::scale;
    t.factor_ = factor;
    return t;
}

namespace {
std::vector<std::size_t> effective_axes(const std::vector<std::size_t>& axes, std::size_t rank) {
    if (!axes.empty()) return axes;
    std::vector<std::size_t> rev(rank);
    std::iota(rev.rbegin(), rev.rend(), std::size_t{0});
    return rev;
}
std::vector<std::size_t> inverse_axes(const std::vector<std::size_t>& axes) {
    std::vector<std::size_t> inv(axes.size());
    for (std::size_t i = 0; i < axes.size(); ++i)
        inv[axes[i]] = i;
    return inv;
}
} // namespace

array permute_axes(const array& a, const std::vector<std::size_t>& axes) {
    // Recorded inside a gradient call, like any transform.
    return transform::permute(axes).apply(a);
}

shape_type transform::output_shape(const shape_type& in) const {
    switch (op_) {
    case op::identity:
    case op::scale:
        return in;
    case op::permute: {
        const auto axes = effective_axes(axes_, in.size());
        if (axes.size() != in.size())
            detail::throw_shape("transform" + to_string(),
                                fmt::format("an array of rank {}", axes.size()),
                                fmt::format("rank {}", in.size()));
        shape_type out(in.size());
        for (std::size_t i = 0; i < in.size(); ++i)
            out[i] = in[axes[i]];
        return out;
    }
    case op::reshape: {
        // Checked products: a shape whose count wraps around 2^64 must not match a small one.
        const std::size_t a = detail::checked_size(in), b = detail::checked_size(shape_);
        if (a != b)
            detail::throw_shape("transform" + to_string(),
                                fmt::format("an array of {} elements", b),
                                fmt::format("{} elements", a));
        return shape_;
    }
    }
    return in;
}

array transform::apply(const array& a) const {
    if (op_ == op::identity) return a;
    (void)output_shape(a.shape()); // the rank or size check, with this transform's name
    // The forward computation with kernels: the tape is not consulted here, so a tie
    // expanded outside a gradient call records nothing and allocates no trace.
    array out = [&] {
        switch (op_) {
        case op::permute:
            return kernels::permute(a, effective_axes(axes_, a.ndim()));
        case op::reshape:
            return kernels::view(a, shape_);
        case op::scale:
            if (!is_inexact(a.dtype()))
                detail::throw_shape("transform" + to_string(), "a float array",
                                    std::string(dtype_name(a.dtype())));
            return kernels::scale(a, factor_);
        case op::identity:
            break;
        }
        return a;
    }();
    if (!a.trace()) return out;
    // Inside a gradient call (the expansion of a traced model): one tape entry whose rule is
    // the adjoint, applied through this same function, so a differentiable backward pass
    // records it in turn (second order through a transposed tie).
    return detail::traced({"transform", true}, std::move(out), {&a}, [&] {
        return [t = *this, in = a.shape()](const array& g, detail::cotangent_sink& s) {
            s.add(0, t.adjoint(g, in));
        };
    });
}

array transform::adjoint(const array& cotangent, const shape_type& input_shape) const {
    switch (op_) {
    case op::identity:
        return cotangent;
    case op::permute:
        return permute(inverse_axes(effective_axes(axes_, input_shape.size()))).apply(cotangent);
    case op::reshape:
        return reshape(input_shape).apply(cotangent);
    case op::scale:
        return apply(cotangent); // a scale is its own transpose
    }
    return cotangent;
}

array transform::inverse(const array& output, const shape_type& input_shape) const {
    if (op_ != op::scale) return adjoint(output, input_shape); // permutations and views
    if (factor_ == 0)
        detail::throw_shape("transform" + to_string(), "an invertible transform", "a scale by 0");
    return scale(1.0 / factor_).apply(output);
}

std::string transform::to_string() const {
    switch (op_) {
    case op::identity:
        return "";
    case op::permute:
        return axes_.empty() ? ".T" : fmt::format(".permute({})", fmt::join(axes_, ","));
    case op::reshape:
        return fmt::format(".reshape({})", fmt::join(shape_, ","));
    case op::scale:
        return fmt::format("*{}", factor_);
    }
    return "";
}

std::string to_string(const std::vector<transform>& chain) {
    std::string out;
    for (const auto& t : chain)
        out += t.to_string();
    return out;
}

transform transform::parse(const std::string& text) {
    auto fail = [&] {
        throw format_error("transform::parse", "", "'.T', '.permute(..)', '.reshape(..)' or '*x'",
                           "'" + text + "'");
    };
    auto numbers = [&](std::string_view inner) {
        std::vector<std::size_t> out;
        std::size_t i = 0;
        while (i < inner.size()) {
            std::size_t v = 0;
            const auto [p, ec] = std::from_chars(inner.data() + i, inner.data() + inner.size(), v);
            if (ec != std::errc{}) fail();
            out.push_back(v);
            i = static_cast<std::size_t>(p - inner.data());
            if (i < inner.size()) {
                if (inner[i] != ',') fail();
                ++i;
            }
        }
        return out;
    };
    if (text.empty()) return {};
    if (text == ".T") return transpose();
    const std::string_view t = text;
    if (t.starts_with(".permute(") && t.ends_with(")"))
        return permute(numbers(t.substr(9, t.size() - 10)));
    if (t.starts_with(".reshape(") && t.ends_with(")"))
        return reshape(numbers(t.substr(9, t.size() - 10)));
    if (t.starts_with("*")) {
        // from_chars, not stod: the C locale's decimal point whatever the process locale
        // (under de_DE, stod reads "0.5" as 0 and stops at the '.').
        double f = 0;
        const auto [end, ec] = std::from_chars(t.data() + 1, t.data() + t.size(), f);
        if (ec != std::errc{} || end != t.data() + t.size()) fail();
        return scale(f);
    }
    fail();
    return {};
}

} // namespace paramtree
