// paramtree — user-defined differentiable operations: a forward and its own backward.
// `custom_vjp(name, forward, backward)` makes an operation from arrays to an array (or to
// several) that records itself on the gradient tape like the built-in ones. `forward` runs on
// the plain values of the inputs (nothing it does is recorded) and may save residuals for
// `backward`, which maps the cotangent of the output to one cotangent per input (a
// vector-Jacobian product): JAX's `custom_vjp`, PyTorch's `autograd.Function`. Outside a
// gradient call the operation is just `forward`. Ties need nothing: a tied weight reaches the
// operation as the one traced array, so its cotangent joins the tie's single gradient.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>

namespace paramtree {

namespace detail {

/// What a custom operation's forward produced: its outputs and the backward that goes with
/// them (the residuals live in its closure).
struct custom_forward {
    std::vector<array> outputs;
    /// Cotangents of the outputs (zeros for an output nothing used) to one cotangent per
    /// input; nullopt for an input that gets none (an integer index, a constant).
    std::function<std::vector<std::optional<array>>(const std::vector<array>& cotangents)> backward;
};

/// Runs `forward` on the plain values of `inputs`, checks what it returns, and records the
/// operation on the inputs' tape if any input is traced. Errors name the operation.
[[nodiscard]] std::vector<array>
call_custom_vjp(const std::string& name, std::span<const array* const> inputs,
                const std::function<custom_forward(std::span<const array> plain)>& forward);

template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};

/// The user's backward result as one optional cotangent per input.
[[nodiscard]] inline std::vector<std::optional<array>> to_cotangents(array g) {
    return {std::optional<array>(std::move(g))};
}
[[nodiscard]] inline std::vector<std::optional<array>> to_cotangents(std::vector<array> gs) {
    return {std::make_move_iterator(gs.begin()), std::make_move_iterator(gs.end())};
}
[[nodiscard]] inline std::vector<std::optional<array>>
to_cotangents(std::vector<std::optional<array>> gs) {
    return gs;
}
template <std::size_t N>
[[nodiscard]] std::vector<std::optional<array>> to_cotangents(std::array<array, N> gs) {
    return {std::make_move_iterator(gs.begin()), std::make_move_iterator(gs.end())};
}

/// The user's backward called with the residuals (if any) and the output cotangent: one array
/// for a one-output operation, all of them otherwise. A function template of its own, not an
/// `if constexpr` inside the closure: clang 14 instantiates both branches of that one (the
/// closure is not itself a template) and rejects the call that does not apply.
template <class Out, class Backward, class... Residuals>
[[nodiscard]] std::vector<std::optional<array>>
call_backward(const Backward& backward, const std::vector<array>& g, const Residuals&... res) {
    if constexpr (std::same_as<Out, array>)
        return to_cotangents(std::invoke(backward, res..., g.front()));
    else
        return to_cotangents(std::invoke(backward, res..., g));
}

/// The outputs as the caller receives them: one array, or all of them.
template <class Out>
[[nodiscard]] std::vector<array> to_outputs(Out out) {
    if constexpr (std::same_as<Out, array>) {
        return {std::move(out)};
    } else {
        static_assert(std::same_as<Out, std::vector<array>>,
                      "custom_vjp: forward returns pt::array or std::vector<pt::array> (alone or "
                      "as the first of a std::pair with the residuals)");
        return out;
    }
}

} // namespace detail

/// An operation with a user-written backward. `forward(xs...)` takes the inputs as
/// `const pt::array&` and returns the output: an array, or `std::vector<pt::array>` for
/// several outputs, either alone or as `std::pair{output, residuals}` with anything backward
/// needs (any copyable type). `backward` then takes `(residuals, cotangent)` — or only the
/// cotangent when forward saved no residuals — where the cotangent is an array (one output)
/// or `std::vector<pt::array>` (one per output; zeros for an output nothing used), and
/// returns one cotangent per input, with the input's shape and dtype: a `pt::array` (one
/// input), `std::vector<pt::array>`, `std::array<pt::array, N>`, or
/// `std::vector<std::optional<pt::array>>` (nullopt for an input that gets no gradient).
///
/// Both run on plain arrays: `forward` is not recorded, and neither is `backward`, so
/// gradients of gradients through the operation are not available. An array that `forward`
/// uses must be one of its inputs (not captured by the lambda) when it is being
/// differentiated: a captured traced array is refused with a sharing_error. Errors raised
/// inside either function come back naming the operation (`... (in custom op 'softplus'
/// backward)`); a cotangent of the wrong count, shape or dtype is a shape_error naming the
/// operation and the input.
///
/// A numerically stable softplus, log(1 + exp(x)), whose backward is sigmoid(x):
///
///     const auto softplus = pt::custom_vjp(
///         "softplus",
///         [](const pt::array& x) {   // max(x, 0) + log(1 + exp(-|x|)) never overflows
///             const pt::array abs = pt::relu(x) + pt::relu(-x);
///             return std::pair{pt::relu(x) + pt::log(1.0 + pt::exp(-abs)), x};
///         },
///         [](const pt::array& x, const pt::array& g) { return g * pt::sigmoid(x); });
///     const auto big = pt::array::from_vector<float>({2}, {100.f, -100.f});
///     pt::array y = softplus(big);    // {100, 0}; log(1 + exp(x)) would give inf
///     auto total = [&](const pt::array& v) { return pt::sum(softplus(v)); };
///     pt::array d = pt::grad(total)(big).as_array();
///     assert(y.item(0) == 100.0 && d.item(0) == 1.0 && d.item(1) < 1e-30);
template <class Forward, class Backward>
[[nodiscard]] auto custom_vjp(std::string name, Forward forward, Backward backward) {
    return [
        name = std::move(name), forward = std::move(forward),
        backward = std::make_shared<const Backward>(std::move(backward))
    ]<class... Xs>(const Xs&... xs) requires(sizeof...(Xs) > 0 &&
                                             (std::same_as<Xs, array> && ...)) {
        static_assert(std::invocable<const Forward&, const Xs&...>,
                      "custom_vjp: forward must take the operation's inputs as const pt::array&");
        using result = std::invoke_result_t<const Forward&, const Xs&...>;
        constexpr std::size_t n = sizeof...(Xs);
        const std::array<const array*, n> inputs{&xs...};
        const auto run = [&](std::span<const array> plain) {
            auto r = [&]<std::size_t... I>(std::index_sequence<I...>) {
                return std::invoke(forward, plain[I]...);
            }
            (std::make_index_sequence<n>{});
            detail::custom_forward out;
            if constexpr (detail::is_pair<result>::value) {
                using out_type = typename result::first_type;
                using residuals = typename result::second_type;
                out.outputs = detail::to_outputs<out_type>(std::move(r.first));
                out.backward = [backward, res = std::make_shared<const residuals>(
                                              std::move(r.second))](const std::vector<array>& g) {
                    return detail::call_backward<out_type>(*backward, g, *res);
                };
            } else {
                out.outputs = detail::to_outputs<result>(std::move(r));
                out.backward = [backward](const std::vector<array>& g) {
                    return detail::call_backward<result>(*backward, g);
                };
            }
            return out;
        };
        auto outputs = detail::call_custom_vjp(name, inputs, run);
        if constexpr (detail::is_pair<result>::value) {
            if constexpr (std::same_as<typename result::first_type, array>)
                return std::move(outputs.front());
            else
                return outputs;
        } else if constexpr (std::same_as<result, array>) {
            return std::move(outputs.front());
        } else {
            return outputs;
        }
    };
}

} // namespace paramtree
