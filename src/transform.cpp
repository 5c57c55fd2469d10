// paramtree — named tie transforms: shapes, application, adjoints, text.
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/transform.hpp>

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
    const std::size_t rank = a.ndim();
    if (axes.size() != rank)
        detail::throw_shape("permute_axes", fmt::format("{} axes for {}", rank, a.describe()),
                            fmt::format("({})", fmt::join(axes, ",")));
    // The differentiable transpose: a transposed tie inside a gradient call sends its
    // gradient back transposed.
    return transpose(a, std::vector<int>(axes.begin(), axes.end()));
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
        std::size_t a = 1, b = 1;
        for (auto e : in)
            a *= e;
        for (auto e : shape_)
            b *= e;
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
    switch (op_) {
    case op::identity:
        return a;
    case op::permute:
        return permute_axes(a, effective_axes(axes_, a.ndim()));
    case op::reshape:
        (void)output_shape(a.shape());
        return a.reshape(shape_);
    case op::scale: {
        if (!is_inexact(a.dtype()))
            detail::throw_shape("transform" + to_string(), "a float array",
                                std::string(dtype_name(a.dtype())));
        const auto f = factor_;
        if (a.trace()) return a * f; // recorded, so the gradient is scaled back
        if (a.dtype() == dtype::float32)
            return array::build<float>(a.shape(), [&](std::span<float> out) {
                const auto in = a.values<float>();
                for (std::size_t i = 0; i < in.size(); ++i)
                    out[i] = static_cast<float>(in[i] * f);
            });
        return array::build<double>(a.shape(), [&](std::span<double> out) {
            const auto in = a.values<double>();
            for (std::size_t i = 0; i < in.size(); ++i)
                out[i] = in[i] * f;
        });
    }
    }
    return a;
}

array transform::adjoint(const array& cotangent, const shape_type& input_shape) const {
    switch (op_) {
    case op::identity:
        return cotangent;
    case op::permute:
        return permute_axes(cotangent, inverse_axes(effective_axes(axes_, input_shape.size())));
    case op::reshape:
        return cotangent.reshape(input_shape);
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
