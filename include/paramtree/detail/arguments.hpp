// paramtree — internal: a call's tree and array arguments as one list of leaves, and the
// arguments rebuilt from new leaves. remat runs f again on traced leaves; check_grad runs f
// on moved ones. Both need the same bookkeeping, kept here once.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <functional>
#include <tuple>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree::detail {

/// Arguments whose leaves are differentiated (the others are passed through as they are).
template <class A>
inline constexpr bool is_differentiable_argument = std::same_as<A, tree> || std::same_as<A, array>;

/// The leaves of the `pt::tree` and `pt::array` arguments of a call, one argument after
/// another, with each tree's structure to put it back together.
template <class... Args>
class flat_arguments {
public:
    static constexpr std::size_t count = sizeof...(Args);
    /// Whether argument i is a tree (its leaves have paths) rather than an array.
    static constexpr std::array<bool, count> is_tree{std::same_as<Args, tree>...};

    explicit flat_arguments(const Args&... args) {
        std::size_t index = 0;
        const auto take = [&]<class A>(const A& arg) {
            offsets_[index] = leaves.size();
            if constexpr (std::same_as<A, tree>) {
                auto [l, d] = flatten(arg);
                defs_[index] = std::move(d);
                for (tree& leaf : l)
                    leaves.push_back(std::move(leaf));
            } else if constexpr (std::same_as<A, array>) {
                leaves.emplace_back(arg);
            }
            ++index;
        };
        (take(args), ...);
        offsets_[count] = leaves.size();
    }

    /// Every leaf of the tree and array arguments, in argument order.
    std::vector<tree> leaves;

    /// Argument i's leaves are [first(i), first(i + 1)) of `leaves`.
    [[nodiscard]] std::size_t first(std::size_t i) const noexcept { return offsets_[i]; }
    /// The structure of tree argument i.
    [[nodiscard]] const treedef& structure(std::size_t i) const noexcept { return defs_[i]; }

    /// `f(arguments...)` with every tree and array argument rebuilt from `in` (same layout as
    /// `leaves`; a tree with its ties filled in when `expand_ties`), and every other argument
    /// I taken from `others` as `std::get<I>(others)`.
    template <class F, class Others>
    decltype(auto) call(const F& f, const std::vector<tree>& in, bool expand_ties,
                        const Others& others) const {
        const auto argument = [&]<std::size_t I>() {
            using A = std::tuple_element_t<I, std::tuple<Args...>>;
            if constexpr (std::same_as<A, tree>) {
                tree t = unflatten(defs_[I], std::vector<tree>(in.begin() + offsets_[I],
                                                               in.begin() + offsets_[I + 1]));
                return expand_ties ? expand(t) : t;
            } else if constexpr (std::same_as<A, array>) {
                return in[offsets_[I]].as_array();
            } else {
                return std::get<I>(others);
            }
        };
        return [&]<std::size_t... I>(std::index_sequence<I...>)->decltype(auto) {
            return std::invoke(f, argument.template operator()<I>()...);
        }
        (std::make_index_sequence<count>{});
    }

private:
    std::array<treedef, count> defs_;
    std::array<std::size_t, count + 1> offsets_{};
};

} // namespace paramtree::detail
