// paramtree — n-ary tree_map and the other whole-tree traversals: tree_map_with_path,
// broadcast_prefix, tree_reduce / tree_all / tree_any, tree_transpose.
#pragma once

#include <concepts>
#include <functional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree {

/// Options of the mapping functions.
struct map_options {
    /// Subtrees for which this returns true are passed to `f` whole.
    leaf_predicate is_leaf;
};

namespace detail {
struct flat_inputs {
    treedef def;
    std::vector<std::vector<tree>> leaves; // one vector per input tree
    std::vector<path> paths;               // of the first tree, when asked for
};
/// Flattens every tree and checks that all structures equal the first one's; throws a
/// structure_error naming the first differing path and both sides otherwise, calling the
/// trees by `names` (their roles: `grads`, `params`) when given, else `tree k`.
[[nodiscard]] flat_inputs flatten_all(const char* context, std::span<const tree* const> trees,
                                      const leaf_predicate& is_leaf, bool with_paths,
                                      std::span<const std::string_view> names = {});
/// Rethrows `e`, raised by the user's function at leaf `i` of `def`, as the same error type
/// carrying that leaf's path when it had none (an array operation's shape error knows no
/// path). The path is only built here, on the error path; the loop itself builds none.
[[noreturn]] void rethrow_at_leaf(const error& e, const char* context, const treedef& def,
                                  std::size_t i);

/// The one body of tree_map and tree_map_with_path: flattens the trees together, calls `f`
/// on each leaf's tuple (its key path first when `WithPath`), names the leaf in an error `f`
/// raises, and rebuilds the first tree's structure from the results.
template <bool WithPath, class F, class... Rest>
[[nodiscard]] tree map_leaves(const char* context, const map_options& options, F& f, const tree& t,
                              const Rest&... rest) {
    const tree* all[] = {&t, &rest...};
    auto in = flatten_all(context, all, options.is_leaf, WithPath);
    std::vector<tree> out;
    out.reserve(in.leaves[0].size());
    std::size_t i = 0;
    try {
        [&]<std::size_t... K>(std::index_sequence<K...>) {
            for (; i < in.leaves[0].size(); ++i) {
                if constexpr (WithPath)
                    out.emplace_back(std::invoke(f, std::as_const(in.paths[i]), in.leaves[0][i],
                                                 in.leaves[K + 1][i]...));
                else
                    out.emplace_back(std::invoke(f, in.leaves[0][i], in.leaves[K + 1][i]...));
            }
        }
        (std::index_sequence_for<Rest...>{});
    } catch (const error& e) {
        rethrow_at_leaf(e, context, in.def, i);
    }
    return unflatten(in.def, std::move(out));
}
} // namespace detail

/// Applies `f` to corresponding leaves of `t` and of every tree in `rest` (which must have
/// the structure of `t`) and rebuilds a tree of that structure from the results.
/// Throws structure_error naming the first differing key path and both sides.
///
///     const pt::tree x = pt::dict({{"a", 1.0}, {"b", 2.0}});
///     const pt::tree y = pt::dict({{"a", 10.0}, {"b", 20.0}});
///     auto sum = pt::tree_map([](const pt::tree& a, const pt::tree& b) {
///         return a.as<double>() + b.as<double>(); }, x, y);
// clang-format off
template <class F, class... Rest>
    requires(std::same_as<Rest, tree> && ...) && std::invocable<F&, const tree&, const Rest&...>
    // clang-format on
    [[nodiscard]] tree
    tree_map(const map_options& options, F&& f, const tree& t, const Rest&... rest) {
    return detail::map_leaves<false>("tree_map", options, f, t, rest...);
}
// clang-format off
template <class F, class... Rest>
    requires(std::same_as<Rest, tree> && ...) && std::invocable<F&, const tree&, const Rest&...>
    // clang-format on
    [[nodiscard]] tree tree_map(F&& f, const tree& t, const Rest&... rest) {
    return tree_map(map_options{}, std::forward<F>(f), t, rest...);
}

/// As tree_map, but `f` also receives the key path of the leaf first.
///
///     auto named = pt::tree_map_with_path([](const pt::path& p, const pt::tree&) {
///         return pt::keystr(p); }, params);
// clang-format off
template <class F, class... Rest>
    requires(std::same_as<Rest, tree> && ...) &&
            std::invocable<F&, const path&, const tree&, const Rest&...>
    // clang-format on
    [[nodiscard]] tree
    tree_map_with_path(const map_options& options, F&& f, const tree& t, const Rest&... rest) {
    return detail::map_leaves<true>("tree_map_with_path", options, f, t, rest...);
}
// clang-format off
template <class F, class... Rest>
    requires(std::same_as<Rest, tree> && ...) &&
            std::invocable<F&, const path&, const tree&, const Rest&...>
    // clang-format on
    [[nodiscard]] tree tree_map_with_path(F&& f, const tree& t, const Rest&... rest) {
    return tree_map_with_path(map_options{}, std::forward<F>(f), t, rest...);
}

/// A tree with the structure of `full` in which every leaf of `prefix` is repeated over the
/// subtree of `full` it stands for (JAX's broadcast_prefix). Throws structure_error if
/// `prefix` is not a prefix of `full`.
///
///     // prefix {'a': 1, 'b': 2} against {'a': [x, y], 'b': z} gives {'a': [1, 1], 'b': 2}
[[nodiscard]] tree broadcast_prefix(const tree& prefix, const tree& full);

/// Left fold of `f` over the leaves of `t`, starting from `init`.
///
///     double n = pt::tree_reduce([](double acc, const pt::tree& l) {
///         return acc + double(l.as_array().size()); }, params, 0.0);
///     assert(n == 4);   // params: w f32[3,1] and b f32[1]
template <class F, class T>
[[nodiscard]] T tree_reduce(F&& f, const tree& t, T init) {
    for (const auto& leaf : leaves(t))
        init = std::invoke(f, std::move(init), leaf);
    return init;
}

/// Truthiness of a leaf: a true bool, a non-zero number, a non-empty string, an array whose
/// elements are all non-zero.
[[nodiscard]] bool truthy(const tree& leaf);

/// True if `pred` holds for every leaf (default: every leaf is truthy).
template <class Pred = bool (*)(const tree&)>
[[nodiscard]] bool tree_all(const tree& t, Pred&& pred = truthy) {
    for (const auto& leaf : leaves(t))
        if (!std::invoke(pred, leaf)) return false;
    return true;
}
/// True if `pred` holds for some leaf (default: some leaf is truthy).
template <class Pred = bool (*)(const tree&)>
[[nodiscard]] bool tree_any(const tree& t, Pred&& pred = truthy) {
    for (const auto& leaf : leaves(t))
        if (std::invoke(pred, leaf)) return true;
    return false;
}

/// Turns a tree of structure `outer.compose(inner)` into one of `inner.compose(outer)`:
/// a list of dicts becomes a dict of lists. Throws structure_error if `t` does not match, or if
/// `outer` or `inner` has no leaf (their composition would forget the other structure).
///
///     // [{'w': 1, 'b': 2}, {'w': 3, 'b': 4}]  ->  {'w': [1, 3], 'b': [2, 4]}
[[nodiscard]] tree tree_transpose(const treedef& outer, const treedef& inner, const tree& t);

} // namespace paramtree
