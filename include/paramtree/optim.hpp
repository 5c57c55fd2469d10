// paramtree — optimizers as pure functions over trees (optax style).
// A `transformation` is a pair of pure functions: `init(params) -> state` and
// `update(grads, state, params) -> {updates, state}`; `apply_updates(params, updates)` takes
// the step. State trees follow the structure of `params` — the PRUNED structure for a tree
// with ties — so a tied weight has one momentum and one pair of Adam moments, and the state
// is an ordinary tree: print it, map it, save it. None in the gradients (leaves a grad filter
// left out) means "no update" there; non-float leaves get None state.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <paramtree/partition.hpp>
#include <paramtree/pattern.hpp>
#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree::optim {

/// A learning rate (or other quantity) as a function of the step, counted from 0.
using schedule = std::function<double(std::int64_t step)>;

/// The same value at every step.
[[nodiscard]] schedule constant_schedule(double value);
/// Linear warm-up from `init_value` to `peak_value` over `warmup_steps`, then cosine decay
/// to `end_value` at step `decay_steps` (counted from 0, warm-up included), then constant —
/// optax's warmup_cosine_decay_schedule.
///
///     auto lr = pt::optim::warmup_cosine_decay_schedule(0.0, 3e-4, 100, 1000);
///     assert(lr(0) == 0.0 && lr(100) == 3e-4);
[[nodiscard]] schedule warmup_cosine_decay_schedule(double init_value, double peak_value,
                                                    std::int64_t warmup_steps,
                                                    std::int64_t decay_steps,
                                                    double end_value = 0.0);

/// A constant or a schedule, wherever a learning rate is asked for.
struct learning_rate {
    schedule fn;
    learning_rate(double value) : fn(constant_schedule(value)) {}
    learning_rate(schedule s) : fn(std::move(s)) {}
};

/// Which leaves a transformation touches: a predicate on (path, leaf), or a tree of bool
/// leaves with the structure of the parameters (optax's mask).
struct leaf_mask {
    path_filter fn;
    leaf_mask() : fn([](const path&, const tree&) { return true; }) {}
    template <class F>
    requires std::is_invocable_r_v<bool, F&, const path&, const tree&> leaf_mask(F f)
        : fn(std::move(f)) {}
    leaf_mask(tree bools);
};

struct update_result {
    tree updates;
    tree state;
};

/// What `step` returns: the parameters after the step and the optimizer's new state.
struct step_result {
    tree params;
    tree state;
};

/// A gradient transformation: two pure functions over trees, and two optional ones that let
/// `step` fuse a whole training step into one pass (a transformation of your own needs
/// neither: `step` then runs `update` and `apply_updates`).
struct transformation {
    std::function<tree(const tree& params)> init;
    std::function<update_result(const tree& grads, const tree& state, const tree& params)> update;
    /// Set when all `update` does is scale every gradient by one factor and keep its state
    /// (clip_by_global_norm): that factor. A chain folds it into the next link's fused step
    /// instead of writing scaled gradients.
    std::function<double(const tree& grads)> gradient_scale;
    /// Set by adam and adamw: `update` followed by `apply_updates`, with the gradients scaled by
    /// `scale` first, in one pass over all leaves. Same results, bit for bit.
    std::function<step_result(const tree& grads, double scale, const tree& state,
                              const tree& params)>
        fused_step;
};

/// Which group each parameter leaf belongs to, for `multi_transform`: a tree of strings with
/// the parameters' (pruned) structure, a function of a leaf's path and value, or patterns
/// tried in order (the first that matches names the group, `otherwise` names the rest).
struct labels {
    std::function<std::string(const path&, const tree&)> fn;
    labels(tree strings);
    template <class F>
    requires std::is_invocable_r_v<std::string, F&, const path&, const tree&> labels(F f)
        : fn(std::move(f)) {}
    labels(std::vector<std::pair<pattern, std::string>> rules, std::string otherwise);
};

/// A transformation per group of parameters (optax's multi_transform): each leaf's gradient
/// goes through the transformation of its label, and each transformation keeps state only for
/// its own leaves (the others are None in its state). A tie is one leaf, so a tie group gets
/// one label; a label function or pattern that gives a tied position a label other than its
/// source's is a sharing_error naming both positions. The labels are kept in the state (they
/// are computed once, by `init`, and saved with it); a label without a transformation is a
/// value_error from `init`.
///
///     auto opt = pt::optim::multi_transform(
///         pt::optim::labels({{pt::pattern("**.bias"), "no_decay"}}, "decay"),
///         {{"decay", pt::optim::adamw(1e-3)}, {"no_decay", pt::optim::adam(1e-3)}});
///     auto state = opt.init(params);
///     auto [updates, next] = opt.update(grads, state, params);
[[nodiscard]] transformation multi_transform(labels group,
                                             std::map<std::string, transformation> transforms);

/// Updates of None and no state: the leaves it is given do not move.
[[nodiscard]] transformation set_to_zero();

/// `inner` for every leaf but those `frozen` matches, which get no update and no optimizer
/// state (a multi_transform of `inner` and `set_to_zero`). A tie is frozen or trained as a
/// whole: a pattern that matches a tied position but not its source (or the reverse) is a
/// sharing_error.
///
///     auto opt = pt::optim::freeze(pt::pattern("layers[0].**"), pt::optim::adam(1e-3));
///     auto state = opt.init(params);
[[nodiscard]] transformation freeze(const pattern& frozen, transformation inner);

/// Gradient accumulation (optax's MultiSteps): `inner` steps once every `every` calls, on the
/// mean of the gradients of those calls; the other calls return None updates (the parameters
/// do not move) and add their gradients to a sum kept in the state, one per stored leaf (a
/// tied weight's sum once). With equal mini-batches, `every` calls equal one step on the
/// `every`-times-larger batch. Throws value_error for `every` < 1, or a state of another
/// multi_steps.
///
///     auto opt = pt::optim::multi_steps(4, pt::optim::adam(1e-3));
///     auto state = opt.init(params);
///     for (int i = 0; i < 4; ++i) {             // four mini-batches, one Adam step
///         auto [updates, next] = opt.update(grads, state, params);
///         params = pt::optim::apply_updates(params, updates);
///         state = next;
///     }
[[nodiscard]] transformation multi_steps(int every, transformation inner);

/// Parameter EMA (Polyak averaging; timm's ModelEma): `inner`'s updates, and in the state a
/// shadow copy of the parameters that follows them, `shadow = decay * shadow + (1 - decay) *
/// (params + updates)` each step, starting at the parameters. The shadow is stored per stored
/// leaf (a tied weight once) and is part of the state, so it is saved with it. Read it as a
/// model with `ema_params`. Throws value_error for a decay outside [0, 1].
///
///     auto opt = pt::optim::ema(0.999, pt::optim::adam(1e-3));
///     auto state = opt.init(params);
///     auto [updates, next] = opt.update(grads, state, params);
///     pt::tree averaged = pt::optim::ema_params(next, params);   // evaluate with these
[[nodiscard]] transformation ema(double decay, transformation inner);

/// The shadow parameters of an `ema` state as a tree of `params`' structure (its ties
/// included; non-float leaves from `params`). Throws structure_error if `state` is not an
/// ema state or does not match `params`.
[[nodiscard]] tree ema_params(const tree& state, const tree& params);

/// Transformations applied in order; the state is a tuple of their states.
///
///     auto opt = pt::optim::chain({pt::optim::clip_by_global_norm(1.0), pt::optim::adam(1e-3)});
[[nodiscard]] transformation chain(std::vector<transformation> parts);

/// Scales by -lr(step) (the descent direction): the last link of most chains.
[[nodiscard]] transformation scale_by_learning_rate(learning_rate lr);
/// Adam's moment estimates with bias correction: updates become mu_hat / (sqrt(nu_hat) + eps).
[[nodiscard]] transformation scale_by_adam(double b1 = 0.9, double b2 = 0.999, double eps = 1e-8);
/// Momentum (optax's trace): t = g + decay * t; the update is t, or g + decay * t (Nesterov).
[[nodiscard]] transformation trace(double decay, bool nesterov = false);
/// Adds weight_decay * param to the update of the leaves `mask` selects (decoupled decay).
[[nodiscard]] transformation add_decayed_weights(double weight_decay, leaf_mask mask = {});
/// What `clip_by_global_norm` does when the global norm is NaN or infinite (a gradient
/// overflowed or a loss became NaN).
enum class nonfinite_policy {
    /// Every float update becomes NaN (optax's behaviour): the step visibly poisons the
    /// parameters instead of letting the finite leaves move by unclipped amounts while the
    /// non-finite ones corrupt theirs. Detect it with `std::isfinite` on the loss or the norm.
    propagate,
    /// Throw `pt::value_error` naming the first leaf whose gradient is not finite (PyTorch's
    /// `clip_grad_norm_(error_if_nonfinite=True)`), so a training loop can stop or skip.
    error,
};

/// Scales all updates by max_norm / global_norm when the global norm exceeds max_norm. A
/// non-finite norm is handled by `policy` (see `nonfinite_policy`).
///
///     auto clip = pt::optim::clip_by_global_norm(1.0, pt::optim::nonfinite_policy::error);
///     // clip.update(grads, clip.init(params), params) throws pt::value_error on a NaN gradient
[[nodiscard]] transformation
clip_by_global_norm(double max_norm, nonfinite_policy policy = nonfinite_policy::propagate);

/// Stochastic gradient descent, with optional (Nesterov) momentum.
///
///     auto opt = pt::optim::sgd(0.1, 0.9);
///     pt::tree state = opt.init(params);
///     auto [updates, next] = opt.update(grads, state, params);
///     params = pt::optim::apply_updates(params, updates);
[[nodiscard]] transformation sgd(learning_rate lr, double momentum = 0.0, bool nesterov = false);
/// Adam (Kingma & Ba), as in optax and torch.optim.Adam.
[[nodiscard]] transformation adam(learning_rate lr, double b1 = 0.9, double b2 = 0.999,
                                  double eps = 1e-8);
/// AdamW: Adam with decoupled weight decay on the leaves `mask` selects (e.g. not biases and
/// norms: `[](const pt::path& p, const pt::tree&) { return pt::keystr(p).ends_with("weight"); }`).
[[nodiscard]] transformation adamw(learning_rate lr, double b1 = 0.9, double b2 = 0.999,
                                   double eps = 1e-8, double weight_decay = 1e-4,
                                   leaf_mask mask = {});

/// One training step: the new parameters `apply_updates(params, updates)` and the new state,
/// where `{updates, state} = t.update(grads, state, params)` — bit for bit. For adam, adamw and
/// a chain of `clip_by_global_norm` and one of them it is one pass over the gradients (the
/// norm) and one over every leaf at once, split across threads by elements: it reads the
/// gradient, moments and parameter of each element and writes the moments and the parameter,
/// without the clipped gradients and the updates `update` writes and `apply_updates` reads.
///
///     auto opt = pt::optim::chain({pt::optim::clip_by_global_norm(1.0), pt::optim::adamw(1e-3)});
///     pt::tree state = opt.init(params);
///     auto [next_params, next_state] = pt::optim::step(opt, grads, state, params);
[[nodiscard]] step_result step(const transformation& t, const tree& grads, const tree& state,
                               const tree& params);

/// params + updates leaf by leaf; a None update leaves the parameter as it is. Throws
/// structure_error (naming the path) if the trees do not line up, shape_error if a leaf's
/// dtype or shape differs.
[[nodiscard]] tree apply_updates(const tree& params, const tree& updates);

/// sqrt of the sum of squares of every float array leaf (None leaves skipped). For a tree with
/// ties each tied value counts once. Finite values give a finite norm: when float64 squares
/// would overflow or vanish (values past 1e154 or below 1e-162) the values are scaled by the
/// largest magnitude first, as BLAS `nrm2` does; a NaN or an infinity gives a non-finite norm.
[[nodiscard]] double global_norm(const tree& t);

} // namespace paramtree::optim
