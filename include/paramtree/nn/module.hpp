// paramtree — functional neural-network modules: how a module tree is applied.
// A module is a record: its parameters are leaves, its hyper-parameters (sizes, activation,
// rates) are static fields of the treedef. `nn::apply(module, x, ctx)` applies a built-in
// module (see <paramtree/nn/layers.hpp> and <paramtree/nn/attention.hpp>) as a pure
// function: the same on plain arrays and on the traced arrays a gradient call passes, so a
// model is differentiated by differentiating the function that applies it.
#pragma once

#include <optional>
#include <string_view>

#include <paramtree/array.hpp>
#include <paramtree/path.hpp>
#include <paramtree/random.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::nn {

/// How a module is applied.
///
///     auto net = pt::nn::sequential({pt::nn::linear(k1, 3, 8), pt::nn::dropout(0.1)});
///     auto train = pt::nn::context::train(pt::random::make_key(7));   // e.g. keyed by step
///     pt::array y = pt::nn::apply(net, x, train);       // dropout active
///     pt::array z = pt::nn::apply(net, x);              // inference: dropout off
struct context {
    /// A training context whose randomness (dropout) comes from `key`.
    [[nodiscard]] static context train(const random::key& key) { return {true, key, {}}; }

    /// Dropout is active only when training.
    bool training = false;
    /// The randomness of this application (dropout); required when training with a rate > 0.
    /// Each module derives its own key from it and its path, so two dropout sites never
    /// share a mask.
    std::optional<random::key> key;
    /// Where the module being applied sits in the model (set by composite modules; it names
    /// the module in error messages).
    path where;

    /// The context of the child reached through `e`.
    [[nodiscard]] context child(path_entry e) const;
    /// The context of the child named `name` (a record field).
    [[nodiscard]] context child(std::string_view name) const;
    /// The context of the child at `i` (a list element).
    [[nodiscard]] context child(std::size_t i) const;
    /// A key unique to this module's path. Throws leaf_error naming the path if there is none.
    [[nodiscard]] random::key module_key() const;
};

/// Applies the built-in module `module` to `x`. Throws structure_error naming the path for a
/// record that is not a built-in module, shape_error naming the path and both shapes when `x`
/// does not fit the module.
///
///     pt::tree layer = pt::nn::linear(pt::random::make_key(0), 4, 2);
///     pt::array y = pt::nn::apply(layer, pt::array::ones({8, 4}));   // [8, 2]
[[nodiscard]] array apply(const tree& module, const array& x, const context& ctx = {});

} // namespace paramtree::nn
