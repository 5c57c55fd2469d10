// paramtree — differentiable arithmetic, elementwise functions, reductions and shape
// operations. Each computes with an untraced kernel, then (only when an input is traced)
// records a backward function that is itself built from kernels.
#include <paramtree/ops.hpp>

#include "compute/kernels.hpp"
#include "compute/rule_ops.hpp"

#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

namespace k = kernels;
using detail::cotangent_sink;
using detail::rule_ops;
using detail::traced;

namespace {

/// A 0-d array of `x`'s dtype holding `s`.
array scalar_like(const array& x, double s) {
    return array::full({}, s, x.dtype());
}

/// `pred(x)` elementwise as a bool array: a constant (not recorded), for the masks of the
/// piecewise rules (relu's x > 0, pow's b != 0).
template <class Pred>
array constant_mask(const char* name, const array& x, Pred pred) {
    return k::float_dispatch(name, x, [&](auto tag) {
        using T = decltype(tag);
        return k::unary<T>(x, [&](T v) { return pred(v); }).astype(dtype::boolean);
    });
}

/// An elementwise float function with derivative `deriv(x, y)` (y = f(x)), fused into one
/// kernel pass for first-order gradients, and `graph(g, x, y)`, the same product g·f'(x)
/// written with recorded operations, for gradients that are differentiated again.
template <class Fwd, class Deriv, class Graph>
array unary_op(const char* name, const array& x, Fwd fwd, Deriv deriv, Graph graph) {
    array y = k::float_dispatch(name, x, [&](auto tag) {
        using T = decltype(tag);
        return k::unary<T>(x, [&](T v) { return static_cast<T>(fwd(v)); });
    });
    return traced({name, true}, y, {&x}, [&] {
        return [x, y, deriv, graph](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                s.add(0, graph(g, x, s.output(y)));
                return;
            }
            s.add(0, k::float_dispatch("", g, [&](auto tag) {
                      using T = decltype(tag);
                      return k::zip3<T>(g, x, y, [&](T gv, T xv, T yv) {
                          return static_cast<T>(gv * deriv(xv, yv));
                      });
                  }));
        };
    });
}

} // namespace

// ---- arithmetic ----------------------------------------------------------------------------

array add(const array& a, const array& b) {
    return traced({"add", true}, k::add(a, b), {&a, &b}, [&] {
        return [sa = a.shape(), sb = b.shape()](const array& g, cotangent_sink& s) {
            const rule_ops o(s);
            if (s.needs(0)) s.add(0, o.sum_to(g, sa));
            if (s.needs(1)) s.add(1, o.sum_to(g, sb));
        };
    });
}

array subtract(const array& a, const array& b) {
    return traced({"subtract", true}, k::sub(a, b), {&a, &b}, [&] {
        return [sa = a.shape(), sb = b.shape()](const array& g, cotangent_sink& s) {
            const rule_ops o(s);
            if (s.needs(0)) s.add(0, o.sum_to(g, sa));
            if (s.needs(1)) s.add(1, o.neg(o.sum_to(g, sb)));
        };
    });
}

array multiply(const array& a, const array& b) {
    return traced({"multiply", true}, k::mul(a, b), {&a, &b}, [&] {
        return [a, b](const array& g, cotangent_sink& s) {
            const rule_ops o(s);
            if (s.needs(0)) s.add(0, o.sum_to(o.mul(g, b), a.shape()));
            if (s.needs(1)) s.add(1, o.sum_to(o.mul(g, a), b.shape()));
        };
    });
}

array divide(const array& a, const array& b) {
    array out = k::div(a, b);
    return traced({"divide", true}, out, {&a, &b}, [&] {
        return [a, b, out](const array& g, cotangent_sink& s) {
            const rule_ops o(s);
            const array ga = o.div(g, b);
            if (s.needs(0)) s.add(0, o.sum_to(ga, a.shape()));
            // d(a/b)/db = -(a/b)/b
            if (s.needs(1)) s.add(1, o.sum_to(o.neg(o.mul(ga, s.output(out))), b.shape()));
        };
    });
}

array negative(const array& x) {
    return traced({"negative", true}, k::neg(x), {&x}, [] {
        return [](const array& g, cotangent_sink& s) { s.add(0, rule_ops(s).neg(g)); };
    });
}

array pow(const array& a, const array& b) {
    k::check_same_dtype("pow", {&a, &b});
    const auto shape = k::broadcast_shapes("pow", {&a, &b});
    array out = k::float_dispatch("pow", a, [&](auto tag) {
        using T = decltype(tag);
        return k::binary<T>(a, b, shape, [](T x, T y) { return std::pow(x, y); });
    });
    return traced({"pow", true}, out, {&a, &b}, [&] {
        return [a, b, out, shape](const array& g, cotangent_sink& s) {
            if (s.differentiable()) {
                // b a^(b-1) where b != 0 (0 at b = 0, also at a = 0), and a^b log a.
                const array nonzero = constant_mask("pow", b, [](auto y) { return y != 0; });
                const array zero = array::zeros({}, g.dtype());
                const array safe_b = where(nonzero, b, array::ones({}, b.dtype()));
                const array d = where(nonzero, b * pow(a, safe_b - 1.0), zero);
                if (s.needs(0)) s.add(0, detail::sum_to(g * d, a.shape()));
                if (s.needs(1)) s.add(1, detail::sum_to(g * s.output(out) * log(a), b.shape()));
                return;
            }
            k::float_dispatch("pow", g, [&](auto tag) {
                using T = decltype(tag);
                if (s.needs(0)) {
                    // b * a^(b-1), written as b * out / a would fail at a = 0.
                    const array d = k::binary<T>(a, b, shape, [](T x, T y) {
                        return y == T{0} ? T{0} : y * std::pow(x, y - T{1});
                    });
                    s.add(0, k::sum_to(k::mul(g, d), a.shape()));
                }
                if (s.needs(1)) {
                    const array la = k::unary<T>(a, [](T x) { return std::log(x); });
                    s.add(1, k::sum_to(k::mul(k::mul(g, out), la), b.shape()));
                }
                return 0;
            });
        };
    });
}

array pow(const array& a, double p) {
    return unary_op(
        "pow", a, [p](auto x) { return std::pow(x, static_cast<decltype(x)>(p)); },
        [p](auto x, auto) {
            using T = decltype(x);
            return p == 0 ? T{0} : static_cast<T>(p) * std::pow(x, static_cast<T>(p - 1));
        },
        [p](const array& g, const array& x, const array&) {
            return p == 0 ? g * 0.0 : g * (pow(x, p - 1) * p);
        });
}

array operator+(const array& a, double s) {
    return traced({"add", true}, k::offset(a, s), {&a},
                  [] { return [](const array& g, cotangent_sink& sk) { sk.add(0, g); }; });
}
array operator-(const array& a, double s) {
    return a + (-s);
}
array operator*(const array& a, double s) {
    return traced({"multiply", true}, k::scale(a, s), {&a}, [s] {
        return [s](const array& g, cotangent_sink& sk) { sk.add(0, rule_ops(sk).scale(g, s)); };
    });
}
array operator/(const array& a, double s) {
    k::float_dispatch("divide", a, [](auto) { return 0; });
    return a * (1.0 / s);
}
array operator+(double s, const array& a) {
    return a + s;
}
array operator-(double s, const array& a) {
    return -a + s;
}
array operator*(double s, const array& a) {
    return a * s;
}
array operator/(double s, const array& a) {
    return divide(scalar_like(a, s), a);
}

// ---- elementwise functions -----------------------------------------------------------------

array exp(const array& x) {
    return unary_op(
        "exp", x, [](auto v) { return k::fast_exp(v); }, [](auto, auto y) { return y; },
        [](const array& g, const array&, const array& y) { return g * y; });
}
array log(const array& x) {
    return unary_op(
        "log", x, [](auto v) { return std::log(v); },
        [](auto v, auto) { return decltype(v){1} / v; },
        [](const array& g, const array& x, const array&) { return g / x; });
}
array sqrt(const array& x) {
    return unary_op(
        "sqrt", x, [](auto v) { return std::sqrt(v); },
        [](auto, auto y) { return decltype(y){0.5} / y; },
        [](const array& g, const array&, const array& y) { return g * 0.5 / y; });
}
array tanh(const array& x) {
    return unary_op(
        "tanh", x, [](auto v) { return k::fast_tanh(v); },
        [](auto, auto y) { return decltype(y){1} - y * y; },
        [](const array& g, const array&, const array& y) { return g * (1.0 - y * y); });
}
array sigmoid(const array& x) {
    return unary_op(
        "sigmoid", x,
        [](auto v) {
            using T = decltype(v);
            if (v >= T{0}) return T{1} / (T{1} + k::fast_exp(-v));
            const T e = k::fast_exp(v); // no overflow for very negative v
            return e / (T{1} + e);
        },
        [](auto, auto y) { return y * (decltype(y){1} - y); },
        [](const array& g, const array&, const array& y) { return g * (y * (1.0 - y)); });
}
array relu(const array& x) {
    return unary_op(
        "relu", x, [](auto v) { return v > decltype(v){0} ? v : decltype(v){0}; },
        [](auto v, auto) { return v > decltype(v){0} ? decltype(v){1} : decltype(v){0}; },
        [](const array& g, const array& x, const array&) {
            // The mask is a constant: relu is piecewise linear.
            const array positive = constant_mask("relu", x, [](auto v) { return v > 0; });
            return where(positive, g, array::zeros({}, g.dtype()));
        });
}
namespace {
constexpr double inv_sqrt_2pi = std::numbers::inv_sqrtpi / std::numbers::sqrt2;

/// Phi(x), the standard normal CDF, whose derivative phi(x) is recorded in terms of exp: the
/// differentiable form of gelu's derivative needs it to be differentiable again.
array normal_cdf(const array& x) {
    return unary_op(
        "normal_cdf", x,
        [](auto v) {
            using T = decltype(v);
            return T(0.5) * (T{1} + std::erf(v * T(std::numbers::sqrt2 / 2)));
        },
        [](auto v, auto) {
            using T = decltype(v);
            return std::exp(T(-0.5) * v * v) * T(inv_sqrt_2pi);
        },
        [](const array& g, const array& v, const array&) {
            return g * exp(v * v * -0.5) * inv_sqrt_2pi;
        });
}
} // namespace

array gelu(const array& x, bool approximate) {
    if (approximate) {
        // 0.5 x (1 + t), t = tanh(c (x + 0.044715 x^3)), c = sqrt(2/pi). The backward pass
        // keeps t instead of computing the tanh again (half of its cost).
        return k::float_dispatch("gelu", x, [&](auto tag) {
            using T = decltype(tag);
            // One pass writes both y and the t the backward pass keeps.
            auto t_data = detail::fresh<T>(x.shape());
            auto y_data = detail::fresh<T>(x.shape());
            const array t = std::move(t_data.value);
            array y = std::move(y_data.value);
            T* tp = t_data.data;
            T* yp = y_data.data;
            const T* xp = detail::data<T>(x);
            const std::size_t n = x.size();
            k::vectorized_parallel(n, [&](std::size_t lo, std::size_t hi) PT_INLINE {
                for (std::size_t i = lo; i < hi; ++i) {
                    const T tv = k::gelu_tanh_t(xp[i]);
                    tp[i] = tv;
                    yp[i] = k::gelu_tanh_value(xp[i], tv);
                }
            });
            return traced({"gelu", true}, y, {&x}, [&] {
                return [x, t](const array& g, cotangent_sink& s) {
                    if (s.differentiable()) {
                        const array tt = tanh((x + x * x * x * 0.044715) * k::gelu_c);
                        s.add(0, g * ((tt + 1.0) * 0.5 + x * (1.0 - tt * tt) * (0.5 * k::gelu_c) *
                                                             (x * x * (3 * 0.044715) + 1.0)));
                        return;
                    }
                    s.add(0, k::zip3<T>(g, x, t, [](T gv, T v, T tv) {
                              return gv * k::gelu_tanh_slope(v, tv);
                          }));
                };
            });
        });
    }
    // x Phi(x); d/dx = Phi(x) + x phi(x)
    return unary_op(
        "gelu", x, [](auto v) { return k::gelu_erf_value(v); },
        [](auto v, auto) { return k::gelu_erf_slope(v); },
        [](const array& g, const array& x, const array&) {
            return g * (normal_cdf(x) + x * exp(x * x * -0.5) * inv_sqrt_2pi);
        });
}

// ---- reductions ----------------------------------------------------------------------------

namespace {
/// Finishes a keepdims reduction result: drops the kept axes unless asked to keep them, and
/// records `backward(g_keepdims)` for the input.
template <class Backward>
array finish_reduction(const char* name, const array& x, const array& kept,
                       const std::vector<std::size_t>& axes, bool keepdims, Backward backward) {
    array out = keepdims ? kept : k::view(kept, k::reduced_shape(x.shape(), axes, false));
    return traced({name, true}, out, {&x}, [&] {
        return [kept_shape = kept.shape(), backward](const array& g, cotangent_sink& s) {
            const rule_ops o(s);
            s.add(0, backward(o, o.view(g, kept_shape)));
        };
    });
}
std::size_t count_of(const array& x, const std::vector<std::size_t>& axes) {
    std::size_t n = 1;
    for (const auto a : axes)
        n *= x.shape()[a];
    return n;
}
} // namespace

array sum(const array& x, const std::vector<int>& axes, bool keepdims) {
    const auto ax = k::normalize_axes("sum", x, axes);
    return finish_reduction("sum", x, k::sum(x, ax), ax, keepdims,
                            [shape = x.shape()](const rule_ops& o, const array& g) {
                                return o.broadcast_to(g, shape);
                            });
}

array mean(const array& x, const std::vector<int>& axes, bool keepdims) {
    const auto ax = k::normalize_axes("mean", x, axes);
    k::float_dispatch("mean", x, [](auto) { return 0; });
    const std::size_t n = count_of(x, ax);
    const double inv = n == 0 ? std::nan("") : 1.0 / static_cast<double>(n);
    return finish_reduction("mean", x, k::scale(k::sum(x, ax), inv), ax, keepdims,
                            [shape = x.shape(), inv](const rule_ops& o, const array& g) {
                                return o.broadcast_to(o.scale(g, inv), shape);
                            });
}

array max(const array& x, const std::vector<int>& axes, bool keepdims) {
    const auto ax = k::normalize_axes("max", x, axes);
    const array kept = k::max(x, ax);
    return finish_reduction(
        "max", x, kept, ax, keepdims, [x, kept, ax](const rule_ops& o, const array& g) {
            // The gradient goes to the maxima, shared equally among ties
            // (which are constants: max is piecewise linear).
            return k::float_dispatch("max", x, [&](auto tag) {
                using T = decltype(tag);
                const array hit =
                    k::binary<T>(x, kept, x.shape(), [](T v, T m) { return v == m ? T{1} : T{0}; });
                const array share = o.div(g, k::sum(hit, ax));
                return o.mul(hit, share);
            });
        });
}

// ---- shapes --------------------------------------------------------------------------------

array reshape(const array& x, shape_type shape) {
    return x.reshape(std::move(shape));
}

array transpose(const array& x) {
    std::vector<int> axes(x.ndim());
    std::iota(axes.rbegin(), axes.rend(), 0);
    return transpose(x, axes);
}

array transpose(const array& x, const std::vector<int>& axes) {
    const auto rank = static_cast<int>(x.ndim());
    std::vector<std::size_t> perm;
    for (const int a : axes) {
        const int n = a < 0 ? a + rank : a;
        perm.push_back(n < 0 ? x.ndim() : static_cast<std::size_t>(n));
    }
    auto sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    bool ok = perm.size() == x.ndim();
    for (std::size_t i = 0; ok && i < sorted.size(); ++i)
        ok = sorted[i] == i;
    if (!ok)
        detail::throw_shape("transpose",
                            fmt::format("a permutation of the {} axes of {}", rank, x.describe()),
                            fmt::format("({})", fmt::join(axes, ",")));
    return traced({"transpose", true}, k::permute(x, perm), {&x}, [&] {
        std::vector<std::size_t> inverse(perm.size());
        for (std::size_t i = 0; i < perm.size(); ++i)
            inverse[perm[i]] = i;
        return [inverse](const array& g, cotangent_sink& s) {
            s.add(0, rule_ops(s).permute(g, inverse));
        };
    });
}

array swapaxes(const array& x, int a, int b) {
    const auto ax = k::normalize_axes("swapaxes", x, {a});
    const auto bx = k::normalize_axes("swapaxes", x, {b});
    std::vector<int> perm(x.ndim());
    std::iota(perm.begin(), perm.end(), 0);
    std::swap(perm[ax[0]], perm[bx[0]]);
    return transpose(x, perm);
}

array broadcast_to(const array& x, const shape_type& shape) {
    return traced({"broadcast_to", true}, k::broadcast_to(x, shape), {&x}, [&] {
        return [in = x.shape()](const array& g, cotangent_sink& s) {
            s.add(0, rule_ops(s).sum_to(g, in));
        };
    });
}

namespace detail {
array sum_to(const array& g, const shape_type& shape) {
    if (g.shape() == shape) return g;
    if (g.ndim() < shape.size())
        throw_shape("sum_to (internal)", describe(g.dtype(), shape), g.describe());
    const std::size_t lead = g.ndim() - shape.size();
    std::vector<int> axes;
    for (std::size_t i = 0; i < g.ndim(); ++i)
        if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
            axes.push_back(static_cast<int>(i));
    return sum(g, axes).reshape(shape);
}
} // namespace detail

array stop_gradient(const array& x) {
    return x.trace() ? x.with_trace(nullptr) : x;
}

} // namespace paramtree
