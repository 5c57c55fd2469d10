// paramtree — reverse-mode gradients of functions of parameter trees.
// `value_and_grad(f)(params, args...)` calls `f` once on a copy of `params` whose selected
// leaves are *traced* (the operations of <paramtree/ops.hpp> record themselves on a tape that
// belongs to this one call), then runs the tape backwards. The gradient tree has exactly the
// structure of `params` — for a tree with ties, the PRUNED structure — so a tied weight gets
// one gradient: the sum over every position that uses it, transposed back through a
// transforming tie. There is no global state: two threads may take gradients at once.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

/// Options of value_and_grad / grad.
struct grad_options {
    /// Which argument of `f` is differentiated (a tree or an array).
    std::size_t argnum = 0;
    /// Which leaves of that tree are differentiated; the gradient holds None at the others
    /// (Equinox's filter_value_and_grad). A selected leaf must be a float array.
    leaf_filter filter = is_float_array;
};

/// What value_and_grad returns: `auto [loss, grads] = ...`.
struct value_and_grad_result {
    array value; // f's scalar result (untraced, unless f runs inside a differentiated function)
    tree grad;   // the structure of the differentiated argument
};
/// With auxiliary outputs (`f` returned `std::pair<array, tree>`): `auto [loss, aux, grads]`.
struct value_and_grad_aux_result {
    array value;
    tree aux; // f's second result, its arrays untraced
    tree grad;
};

namespace detail {

/// One gradient call: owns the tape for its duration (a tape_scope, closed on the way out,
/// also on an exception, so traced arrays that escape can no longer record). Inside a
/// differentiated function (its argument traced by an enclosing call, or called while the
/// enclosing call's `f` runs) it records on the enclosing tape instead, and its gradient is
/// itself traced: grad of grad.
class grad_session {
public:
    /// `params` with its selected leaves traced, ties expanded: what `f` sees.
    [[nodiscard]] tree trace(const tree& params, const leaf_filter& filter);
    /// An array argument, traced.
    [[nodiscard]] array trace(const array& x);
    /// Runs the backward pass from `value` and returns the gradient of what was traced.
    [[nodiscard]] tree gradient(const array& value);
    /// One of `f`'s results as the caller receives it: untraced, except inside a
    /// differentiated function, where it stays traced by the enclosing call.
    [[nodiscard]] array result(const array& x) const;
    [[nodiscard]] tree result(const tree& t) const;

private:
    void open(const std::vector<const array*>& traced_inputs);
    [[nodiscard]] array variable(const array& x);

    std::optional<tape_scope> own_; // absent when recording on an enclosing call's tape
    std::shared_ptr<tape> tape_;
    std::optional<enclosing_scope> enclosing_; // while `f` runs
    bool nested_ = false;
    bool is_array_ = false;
    treedef def_;
    std::vector<tree> leaves_;        // the differentiated argument's leaves
    std::vector<std::uint32_t> vars_; // tape id per leaf (`untraced` where not selected)
};

/// `t` with every array leaf's trace removed (the values are kept).
[[nodiscard]] tree strip_traces(const tree& t);
/// `x` without its trace.
[[nodiscard]] array strip_trace(const array& x);
[[noreturn]] void throw_bad_argnum(std::size_t argnum, std::size_t count);
/// sum over the leaves of sum(a * b), recorded; a and b must have one structure (None leaves
/// are skipped). Throws structure_error naming the first differing path.
[[nodiscard]] array tree_vdot(const tree& a, const tree& b);
/// The leaves of `t`'s pruned structure as a list, and back: what hvp differentiates, so
/// that ties stay one leaf at both orders.
[[nodiscard]] std::pair<tree, treedef> leaf_list(const tree& t);
[[nodiscard]] tree from_leaf_list(const treedef& def, const tree& list);
[[noreturn]] void throw_not_differentiable(std::size_t argnum);

template <class R>
struct is_aux_result : std::false_type {};
template <>
struct is_aux_result<std::pair<array, tree>> : std::true_type {};

template <class F, class... Args>
auto call_traced(grad_session& session, const F& f, const grad_options& options,
                 const Args&... args) {
    if (options.argnum >= sizeof...(Args)) throw_bad_argnum(options.argnum, sizeof...(Args));
    std::size_t index = 0;
    // Each argument is passed on unchanged, except the differentiated one, traced.
    auto pass = [&]<class A>(const A& arg) -> decltype(auto) {
        const bool chosen = index++ == options.argnum;
        if constexpr (std::same_as<A, tree>) {
            return chosen ? session.trace(arg, options.filter) : arg;
        } else if constexpr (std::same_as<A, array>) {
            return chosen ? session.trace(arg) : arg;
        } else {
            if (chosen) throw_not_differentiable(options.argnum);
            return (arg);
        }
    };
    // Braced initialisation fixes left-to-right evaluation, so `index` counts in order.
    return std::apply([&](auto&&... p) { return std::invoke(f, std::forward<decltype(p)>(p)...); },
                      std::tuple<decltype(pass(args))...>{pass(args)...});
}
} // namespace detail

/// `f` turned into a function returning its value and its gradient with respect to
/// argument `options.argnum` (a tree or an array). `f` returns a one-element float array,
/// or `std::pair<array, tree>` to also return auxiliary outputs (has_aux).
///
/// `f` sees the differentiated tree with its ties expanded: every use of a tied weight feeds
/// one gradient entry, and the gradient has the pruned structure of the argument.
///
///     auto loss = [](const pt::tree& p, const pt::array& x, const pt::array& y) {
///         return pt::mean(pt::pow(pt::matmul(x, p["w"].as_array()) - y, 2.0)); };
///     auto [value, grads] = pt::value_and_grad(loss)(params, x, y);
///     pt::array gw = grads["w"].as_array();       // the shape of params["w"]
template <class F>
[[nodiscard]] auto value_and_grad(F f, grad_options options = {}) {
    return [f = std::move(f), options = std::move(options)]<class... Args>(const Args&... args) {
        detail::grad_session session;
        auto out = detail::call_traced(session, f, options, args...);
        using R = decltype(out);
        if constexpr (detail::is_aux_result<R>::value) {
            tree grad = session.gradient(out.first);
            return value_and_grad_aux_result{session.result(out.first), session.result(out.second),
                                             std::move(grad)};
        } else {
            static_assert(std::same_as<R, array>,
                          "f must return pt::array or std::pair<pt::array, pt::tree>");
            tree grad = session.gradient(out);
            return value_and_grad_result{session.result(out), std::move(grad)};
        }
    };
}

/// Only the gradient: `pt::grad(f)(params, x)` is `value_and_grad(f)(params, x).grad`.
///
/// Gradients nest (grad of grad): a `grad` taken inside a differentiated function records
/// its own backward pass, so the outer call differentiates through it — a gradient penalty,
/// a MAML inner step, a Hessian-vector product. Operations whose backward has a
/// differentiable form are listed in docs/autodiff.md; differentiating through one that has
/// none (convolution, pooling, custom ops, remat) throws value_error naming it.
///
///     auto f = [](const pt::array& x) { return pt::sum(x * x * x); };   // f' = 3x^2
///     auto df = [&](const pt::array& x) { return pt::sum(pt::grad(f)(x).as_array()); };
///     pt::array f2 = pt::grad(df)(pt::array{1.0, 2.0}).as_array();      // f'' = 6x: {6, 12}
template <class F>
[[nodiscard]] auto grad(F f, grad_options options = {}) {
    return [vg = value_and_grad(std::move(f), std::move(options))]<class... Args>(
               const Args&... args) { return vg(args...).grad; };
}

/// The Hessian of `f` at `params` times `v`: (d²f/dp²)·v, by differentiating the
/// directional derivative <grad f(p), v> (reverse over reverse). `v` has the structure of
/// the gradient — for a tree with ties, the pruned one — and so has the result: a tied
/// weight is one leaf at second order too (the product of the untied model's Hessian,
/// contracted on both sides). `f` takes the tree and returns a one-element float array;
/// its float array leaves are differentiated.
///
///     auto f = [](const pt::tree& p) { return pt::sum(pt::pow(p["w"].as_array(), 3.0)); };
///     const pt::tree p = pt::dict({{"w", pt::array{1.0, 2.0}}});
///     const pt::tree v = pt::dict({{"w", pt::array{1.0, 0.0}}});
///     pt::tree hv = pt::hvp(f, p, v);               // {'w': [6, 0]}: H = diag(6w)
template <class F>
[[nodiscard]] tree hvp(F f, const tree& params, const tree& v) {
    auto [leaves, def] = detail::leaf_list(params);
    auto directional = [&, def = def](const tree& flat) {
        return detail::tree_vdot(grad(f)(detail::from_leaf_list(def, flat)), v);
    };
    return detail::from_leaf_list(def, grad(directional)(leaves));
}

} // namespace paramtree
