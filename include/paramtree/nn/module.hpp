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
#include <paramtree/partition.hpp>
#include <paramtree/path.hpp>
#include <paramtree/random.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::detail {
/// The state updates of one nn::apply_with_state call: the updated State record for each
/// State node applied (by the node's identity, so a tied module, applied twice, updates one
/// state twice in order).
struct state_updates;
} // namespace paramtree::detail

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
    /// Set by apply_with_state (not by users): where stateful modules record their updated
    /// state. Without it a stateful module reads its state and leaves it as it is.
    detail::state_updates* updates = nullptr;

    /// The context of the child reached through `e`.
    [[nodiscard]] context child(path_entry e) const;
    /// The context of the child named `name` (a record field).
    [[nodiscard]] context child(std::string_view name) const;
    /// The context of the child at `i` (a list element).
    [[nodiscard]] context child(std::size_t i) const;
    /// A key unique to this module's path. Throws leaf_error naming the path if there is none.
    [[nodiscard]] random::key module_key() const;
};

/// What apply_with_state gives back: the output and the model with its state updated.
struct stateful_output {
    array y;
    tree model;
};

/// Applies `module` to `x` and returns the model with its state (BatchNorm's running
/// statistics, in `pt.nn.State` records) updated as training updates it; in inference
/// (`ctx.training` false) the model comes back unchanged. The parameters are the same arrays
/// (never copied): only State records are new. A tied module with state has one state, updated by
/// each of its uses in turn (Flax's mutable batch_stats, Equinox's nn.State).
///
///     pt::tree net = pt::nn::sequential({pt::nn::linear(k1, 4, 8), pt::nn::batch_norm(8)});
///     auto [y, updated] = pt::nn::apply_with_state(net, pt::array::ones({16, 4}),
///                                                  pt::nn::context::train(k2));
///     assert(updated["layers"][1]["state"]["num_batches_tracked"].as_array().item() == 1);
[[nodiscard]] stateful_output apply_with_state(const tree& module, const array& x,
                                               const context& ctx = {});

/// The model's non-trainable state split from its parameters, as `pt::partition` splits: two
/// trees of the model's structure, `state` holding the leaves of every `pt.nn.State` record
/// (None elsewhere), `params` the rest (None there). Differentiate `params`, carry `state`,
/// and join them with `pt::combine({params, state})`.
///
///     const pt::tree net = pt::nn::sequential({pt::nn::linear(k1, 4, 8), pt::nn::batch_norm(8)});
///     const auto [params, state] = pt::nn::partition_state(net);
///     assert(pt::tree_equal(pt::combine({params, state}), net));
///     assert(state["layers"][1]["state"]["running_mean"].is_array());
///     assert(params["layers"][1]["state"]["running_mean"].is_none());
struct params_and_state {
    tree params; ///< the model with None at its state leaves
    tree state;  ///< the model with None everywhere else
};
[[nodiscard]] params_and_state partition_state(const tree& model);

/// `target` (a model, or the state half of partition_state, tied or not) with each of its
/// `pt.nn.State` records replaced by the one at the same place in `updated` (what
/// apply_with_state returned, typically inside a gradient call, where the model arrives with
/// its ties expanded). The ties of `target` are kept: a tied module's state is read from
/// where it is stored. Throws structure_error naming the place if `updated` has no State
/// record there.
///
///     pt::tree net = pt::nn::sequential({pt::nn::linear(k1, 4, 8), pt::nn::batch_norm(8)});
///     auto [y, updated] = pt::nn::apply_with_state(net, pt::array::ones({16, 4}),
///                                                  pt::nn::context::train(k2));
///     const pt::tree state = pt::nn::partition_state(net).state;
///     const pt::tree next = pt::nn::update_state(state, updated);   // net's structure, new state
[[nodiscard]] tree update_state(const tree& target, const tree& updated);

/// Applies the built-in module `module` to `x`. Throws structure_error naming the path for a
/// record that is not a built-in module, shape_error naming the path and both shapes when `x`
/// does not fit the module.
///
///     pt::tree layer = pt::nn::linear(pt::random::make_key(0), 4, 2);
///     pt::array y = pt::nn::apply(layer, pt::array::ones({8, 4}));   // [8, 2]
[[nodiscard]] array apply(const tree& module, const array& x, const context& ctx = {});

} // namespace paramtree::nn
