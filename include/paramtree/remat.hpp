// paramtree — rematerialisation (gradient checkpointing): trade compute for activation memory.
// `remat(f)` is `f` with the same results and the same gradients, but inside a gradient call
// the operations `f` runs are not kept on the tape: only its inputs and outputs are, and `f`
// runs a second time, on a tape of its own, when the backward pass reaches it (JAX's
// `jax.checkpoint`, PyTorch's `torch.utils.checkpoint`). Wrapping each block of a deep model
// keeps one block's activations alive at a time instead of all of them. Named `remat` so it
// does not collide with checkpoint files (<paramtree/checkpoint.hpp>).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/detail/arguments.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

namespace detail {

/// `f` as a function of the leaves of its tree and array arguments, returning its result as
/// a tree.
using leaf_call = std::function<tree(const std::vector<tree>& leaves)>;

/// Calls `call(leaves)`; if any leaf is traced, records the call as one operation whose
/// backward runs `call` again on a nested tape. Throws sharing_error when the result is
/// traced by the enclosing call although its inputs were not (a captured traced array).
[[nodiscard]] tree remat_call(std::vector<tree> leaves, std::shared_ptr<const leaf_call> call);

} // namespace detail

/// `f` rematerialised: the same function, whose intermediate values a gradient call does not
/// keep but recomputes during the backward pass. `f` takes any arguments and returns a
/// `pt::array` or a `pt::tree`; the leaves of its `pt::tree` and `pt::array` arguments are
/// its differentiable inputs, and any other argument (a random key, a `nn::context`, a size)
/// is copied and passed again, unchanged, to the second run — so dropout inside `f` draws the
/// same mask both times, and gradients are bitwise identical to those of `f` itself.
///
/// Every traced array `f` uses must reach it through its arguments: one captured by the
/// lambda is refused with a sharing_error (its gradient would be lost). Outside a gradient
/// call, `remat(f)(args...)` is `f(args...)`.
///
///     const auto block = [](const pt::tree& layer, const pt::array& h) {
///         return pt::tanh(pt::nn::apply(layer, h)) + h;   // residual block
///     };
///     const pt::tree layers = pt::list({pt::nn::linear(k1, 8, 8), pt::nn::linear(k2, 8, 8)});
///     auto loss = [&](const pt::tree& p) {
///         pt::array h = pt::array::ones({4, 8});
///         for (std::size_t i = 0; i < p.size(); ++i)
///             h = pt::remat(block)(p[i], h);     // one block's activations alive at a time
///         return pt::mean(h * h);
///     };
///     pt::tree g = pt::grad(loss)(layers);    // bitwise what it is without pt::remat
template <class F>
[[nodiscard]] auto remat(F f) {
    return [f = std::make_shared<const F>(std::move(f))]<class... Args>(const Args&... args) {
        using result = std::invoke_result_t<const F&, const Args&...>;
        static_assert(std::same_as<result, array> || std::same_as<result, tree>,
                      "remat: f must return pt::array or pt::tree");
        // The other arguments are kept as they are; the differentiable ones only as leaves.
        using constants = std::tuple<
            std::conditional_t<detail::is_differentiable_argument<Args>, std::monostate, Args>...>;
        constants kept{[&]() {
            if constexpr (detail::is_differentiable_argument<Args>)
                return std::monostate{};
            else
                return args;
        }()...};
        auto flat = std::make_shared<detail::flat_arguments<Args...>>(args...);
        std::vector<tree> leaves = std::move(flat->leaves);
        auto call = std::make_shared<const detail::leaf_call>(
            [f, flat = std::move(flat), kept = std::move(kept)](const std::vector<tree>& in) {
                return tree(flat->call(*f, in, false, kept));
            });
        tree out = detail::remat_call(std::move(leaves), std::move(call));
        if constexpr (std::same_as<result, array>)
            return out.as_array();
        else
            return out;
    };
}

} // namespace paramtree
