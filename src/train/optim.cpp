// paramtree — optimizers: schedules, gradient transformations, apply_updates.
// Every per-leaf rule is one fused loop over the leaf's elements (Adam reads g, mu, nu once
// and writes mu, nu and the update once), in the leaf's own float dtype.
#include <paramtree/optim.hpp>

#include "compute/kernels.hpp"

#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ranges.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <optional>

#include <fmt/format.h>

namespace paramtree::optim {

namespace k = kernels;
using detail::data;

schedule constant_schedule(double value) {
    return [value](std::int64_t) { return value; };
}

schedule warmup_cosine_decay_schedule(double init_value, double peak_value,
                                      std::int64_t warmup_steps, std::int64_t decay_steps,
                                      double end_value) {
    if (warmup_steps < 0 || decay_steps < warmup_steps)
        detail::throw_shape(
            "warmup_cosine_decay_schedule", "0 <= warmup_steps <= decay_steps",
            fmt::format("warmup_steps {} and decay_steps {}", warmup_steps, decay_steps));
    return [=](std::int64_t step) {
        if (step < warmup_steps)
            return init_value + (peak_value - init_value) * static_cast<double>(step) /
                                    static_cast<double>(warmup_steps);
        const auto span = decay_steps - warmup_steps;
        if (span == 0 || step >= decay_steps) return end_value;
        const double progress =
            static_cast<double>(step - warmup_steps) / static_cast<double>(span);
        return end_value +
               (peak_value - end_value) * 0.5 * (1 + std::cos(std::numbers::pi * progress));
    };
}

leaf_mask::leaf_mask(tree bools)
    : fn([bools = std::move(bools)](const path& p, const tree&) {
          const tree m = bools.at(p);
          if (m.is_leaf() && std::holds_alternative<bool>(m.value())) return m.as<bool>();
          detail::throw_leaf("leaf_mask", p, "a bool leaf in the mask tree", describe(m));
      }) {}

namespace {

bool is_none_node(const tree& t) {
    return t.is_none();
}

/// The trees flattened with None as a leaf, checked to have one structure: gradients that a
/// filter left None line up with the parameters and the state.
/// `names` are the trees' roles for errors (`grads`, `state.mu`, `params`), never "tree 1".
detail::flat_inputs align(const char* context, std::initializer_list<const tree*> trees,
                          std::initializer_list<std::string_view> names, bool with_paths = false) {
    return detail::flatten_all(context, std::span<const tree* const>(trees.begin(), trees.size()),
                               is_none_node, with_paths,
                               std::span<const std::string_view>(names.begin(), names.size()));
}

/// A float array leaf's array, or null (None, non-float leaves).
const array* float_leaf(const tree& t) {
    return is_float_array(t) ? &t.as_array() : nullptr;
}

/// The state tree for `params`: `make(leaf)` at float array leaves, None elsewhere.
template <class Make>
tree per_leaf_state(const tree& params, Make make) {
    return tree_map(
        map_options{is_none_node},
        [&](const tree& leaf) -> tree {
            if (const array* a = float_leaf(leaf)) return make(*a);
            return tree{};
        },
        params);
}

array zeros_like(const array& a) {
    return array::zeros(a.shape(), a.dtype());
}

tree count_leaf(std::int64_t n) {
    return array::scalar<std::int64_t>(n);
}

/// A state's step counter `c` (found at `at`), checked to be an int64 scalar.
std::int64_t counter_value(const tree& c, const path& at, const char* context) {
    if (!c.is_array() || c.as_array().dtype() != dtype::int64 || c.as_array().size() != 1)
        detail::throw_leaf(context, at, "an int64 step count", describe(c));
    return static_cast<std::int64_t>(c.as_array().item());
}

std::int64_t count_of(const tree& state, const char* context) {
    return counter_value(state["count"], parse_path(".count"), context);
}

/// The path of leaf `i`: from the flattening if it kept paths, else derived from the treedef
/// (only errors need it, so steps do not build paths).
path leaf_path(const detail::flat_inputs& in, std::size_t i) {
    return in.paths.empty() ? in.def.leaf_paths()[i] : in.paths[i];
}

/// Checks that a gradient leaf can update a state leaf of the parameters' dtype and shape.
void check_leaf(const char* context, const detail::flat_inputs& in, std::size_t i, const array& g,
                const array& like) {
    if (g.dtype() != like.dtype() || g.shape() != like.shape())
        detail::throw_leaf(context, leaf_path(in, i), like.describe(), g.describe());
}

/// Calls `f(T)` with the float element type of `a`.
template <class F>
decltype(auto) with_float(const array& a, F&& f) {
    return k::float_dispatch("optimizer", a, std::forward<F>(f));
}

/// The state of a chain of `n` transformations (`owner`: chain, adam, adamw) is a tuple of
/// `n` states. The message is built only on failure: every step checks.
void check_states(std::string_view owner, const tree& state, std::size_t n) {
    if (state.kind() != node_kind::tuple || state.size() != n)
        detail::throw_structure(fmt::format("{}.update", owner), {},
                                fmt::format("a tuple of {} states", n), describe(state));
}

/// None at every leaf of `grads`: updates that leave every parameter where it is.
tree no_updates(const tree& grads) {
    return tree_map([](const tree&) { return tree(); }, grads);
}

/// `grads` with every float leaf multiplied by `factor` (the same tree when it is 1).
tree scaled(const tree& grads, double factor) {
    if (factor == 1.0) return grads;
    return tree_map(
        map_options{is_none_node},
        [&](const tree& g) -> tree {
            if (const array* a = float_leaf(g)) return k::scale(*a, factor);
            return g;
        },
        grads);
}

} // namespace

transformation chain(std::vector<transformation> parts) {
    transformation t;
    t.init = [parts](const tree& params) {
        std::vector<tree> states;
        for (const auto& p : parts)
            states.push_back(p.init(params));
        return paramtree::tuple(std::move(states));
    };
    t.update = [parts](const tree& grads, const tree& state, const tree& params) {
        check_states("chain", state, parts.size());
        tree updates = grads;
        std::vector<tree> states;
        for (std::size_t i = 0; i < parts.size(); ++i) {
            auto r = parts[i].update(updates, state[i], params);
            updates = std::move(r.updates);
            states.push_back(std::move(r.state));
        }
        return update_result{std::move(updates), paramtree::tuple(std::move(states))};
    };
    // A chain of at most one pure scaling (clip_by_global_norm) and a link with a fused step
    // (adam, adamw) steps in one pass: the factor goes into that pass instead of a scaled copy
    // of the gradients. Two scalings in a row would round twice, which one factor cannot
    // reproduce bit for bit, so such chains (and all others) step through `update`.
    const bool fusable = !parts.empty() && parts.back().fused_step && parts.size() <= 2 &&
                         (parts.size() == 1 || parts[0].gradient_scale);
    if (fusable)
        t.fused_step = [parts, update = t.update](const tree& grads, double scale,
                                                  const tree& state, const tree& params) {
            check_states("chain", state, parts.size());
            std::vector<tree> states;
            if (parts.size() == 2) {
                if (scale != 1.0) { // this chain is a link after a scaling: two roundings
                    auto u = update(scaled(grads, scale), state, params);
                    return step_result{apply_updates(params, u.updates), std::move(u.state)};
                }
                scale = parts[0].gradient_scale(grads);
                states.push_back(state[0]);
            }
            step_result r = parts.back().fused_step(grads, scale, state[parts.size() - 1], params);
            states.push_back(std::move(r.state));
            return step_result{std::move(r.params), paramtree::tuple(std::move(states))};
        };
    return t;
}

transformation scale_by_learning_rate(learning_rate lr) {
    transformation t;
    t.init = [](const tree&) { return record("ScaleByScheduleState", {{"count", count_leaf(0)}}); };
    t.update = [fn = lr.fn](const tree& grads, const tree& state, const tree&) {
        const std::int64_t step = count_of(state, "scale_by_learning_rate");
        const double factor = -fn(step);
        tree updates = tree_map(
            map_options{is_none_node},
            [&](const tree& g) -> tree {
                if (g.is_none()) return g;
                return k::scale(g.as_array(), factor);
            },
            grads);
        return update_result{std::move(updates),
                             record("ScaleByScheduleState", {{"count", count_leaf(step + 1)}})};
    };
    return t;
}

namespace {
/// What one Adam pass over the leaves produces, per leaf: the updates (or, for a fused step,
/// the new parameters) and the new moments.
struct adam_leaves {
    std::vector<tree> outputs, mus, nus;
    // A fused step met a gradient at a leaf whose state is not a float array (not one that
    // value_and_grad gives): its caller takes the unfused path, whose rules cover it.
    bool irregular = false;
};

/// The constants of one Adam pass: out = factor (m̂ / (√v̂ + eps) + wd p) for the gradients
/// scaled by `scale`, plus p when `apply` (a fused step writes the new parameter).
struct adam_rule {
    double b1, b2, eps;
    std::int64_t step;
    double factor, weight_decay, scale;
    bool apply;
};

/// One leaf's part of the pass: its element pointers (p null where there is no decay and no
/// apply) and its elements' place in the pass's single index space.
struct adam_job {
    dtype type;
    std::size_t n, first;
    const void *g, *m, *v, *p;
    void *m2, *v2, *out;
    bool decayed;
};

/// Adam over elements [lo, hi) of one leaf. `Decayed` and `Apply` are template arguments: a
/// test of them inside the loop (with a load of p under it, which cannot be speculated) kept
/// GCC from vectorising it, as did its seven arrays (PT_NO_ALIAS) — the scalar loop cost
/// 4.6% of the demo's step.
template <class T, bool Decayed, bool Apply>
void adam_elements(const adam_rule& r, const adam_job& job, std::size_t lo, std::size_t hi) {
    if constexpr (Apply) {
        // The update first, then p + u, a block (in cache) at a time: in one expression the
        // compiler would fuse a·F + p into an FMA, one rounding fewer than update followed by
        // apply_updates, and `step` must equal them bit for bit.
        constexpr std::size_t block = 2048;
        const T* pp = static_cast<const T*>(job.p);
        T* op = static_cast<T*>(job.out);
        for (std::size_t b = lo; b < hi; b += block) {
            const std::size_t e = std::min(hi, b + block);
            adam_elements<T, Decayed, false>(r, job, b, e);
            k::vectorized(e - b, [&]() PT_INLINE {
                for (std::size_t j = b; j < e; ++j)
                    op[j] = static_cast<T>(pp[j] + op[j]);
            });
        }
        return;
    }
    const double c1 = 1 - std::pow(r.b1, static_cast<double>(r.step));
    const double c2 = 1 - std::pow(r.b2, static_cast<double>(r.step));
    const T B1 = T(r.b1), B2 = T(r.b2), E = T(r.eps), C1 = T(1 / c1), C2 = T(1 / c2),
            WD = T(r.weight_decay), F = T(r.factor), S = T(r.scale);
    const T* gp = static_cast<const T*>(job.g);
    const T* m0 = static_cast<const T*>(job.m);
    const T* v0 = static_cast<const T*>(job.v);
    const T* pp = static_cast<const T*>(job.p);
    T* mp = static_cast<T*>(job.m2);
    T* vp = static_cast<T*>(job.v2);
    T* op = static_cast<T*>(job.out);
    k::vectorized(hi - lo, [&]() PT_INLINE {
        PT_NO_ALIAS for (std::size_t j = lo; j < hi; ++j) {
            // Scaled as clip_by_global_norm scales (x * T(s)); s = 1 is exact.
            const T g = static_cast<T>(gp[j] * S);
            const T m = B1 * m0[j] + (T{1} - B1) * g;
            const T v = B2 * v0[j] + (T{1} - B2) * g * g;
            mp[j] = m;
            vp[j] = v;
            T a = m * C1 / (std::sqrt(v * C2) + E);
            if constexpr (Decayed) a = a + WD * pp[j];
            op[j] = a * F; // F = 1 for scale_by_adam: exact
        }
    });
}

template <class T>
void adam_elements(const adam_rule& r, const adam_job& job, std::size_t lo, std::size_t hi) {
    if (job.decayed)
        r.apply ? adam_elements<T, true, true>(r, job, lo, hi)
                : adam_elements<T, true, false>(r, job, lo, hi);
    else
        r.apply ? adam_elements<T, false, true>(r, job, lo, hi)
                : adam_elements<T, false, false>(r, job, lo, hi);
}

/// Runs every job's elements as one index space [0, total), split across threads by
/// elements: a thread's range may end one leaf and start the next, so a model of many small
/// leaves is one parallel region per step, not one (too small to split) loop per leaf.
void run_jobs(const adam_rule& r, const std::vector<adam_job>& jobs) {
    const std::size_t total = jobs.empty() ? 0 : jobs.back().first + jobs.back().n;
    // Nothing to update (a process that owns no leaf of a sharded model, all gradients None):
    // the search below needs a job before every index.
    if (total == 0) return;
    k::parallel_for(total, k::parallel_grain, [&](std::size_t lo, std::size_t hi) {
        auto it = std::upper_bound(jobs.begin(), jobs.end(), lo,
                                   [](std::size_t at, const adam_job& j) { return at < j.first; });
        for (--it; it != jobs.end() && it->first < hi; ++it) {
            const std::size_t a = std::max(lo, it->first) - it->first;
            const std::size_t b = std::min(hi, it->first + it->n) - it->first;
            if (a >= b) continue;
            if (it->type == dtype::float32)
                adam_elements<float>(r, *it, a, b);
            else
                adam_elements<double>(r, *it, a, b);
        }
    });
}

/// The Adam moments of every leaf and its update (or new parameter), in one pass over all
/// leaves that reads g, m, v (and p where decayed or applied) once. scale_by_adam is the case
/// factor 1, no decay; adam and adamw fold their learning rate (and decay) in. `in` holds
/// grads, mu, nu (and params, when `decay` can select a leaf or the step is applied).
adam_leaves adam_pass(const char* context, const detail::flat_inputs& in, const adam_rule& r,
                      const path_filter* decay) {
    const std::size_t n = in.leaves[0].size();
    const bool has_params = in.leaves.size() > 3;
    adam_leaves out{std::vector<tree>(n), std::vector<tree>(n), std::vector<tree>(n)};
    std::vector<adam_job> jobs;
    std::size_t first = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const tree& g = in.leaves[0][i];
        out.outputs[i] = r.apply ? in.leaves[3][i] : g;
        out.mus[i] = in.leaves[1][i];
        out.nus[i] = in.leaves[2][i];
        if (g.is_none()) continue;
        if (!float_leaf(out.mus[i])) {
            if (!r.apply) continue;
            out.irregular = true;
            return out;
        }
        const array& ga = g.as_array();
        check_leaf(context, in, i, ga, out.mus[i].as_array());
        const tree* p = has_params ? &in.leaves[3][i] : nullptr;
        const bool decayed =
            decay && p && r.weight_decay != 0 && float_leaf(*p) && (*decay)(in.paths[i], *p);
        if (decayed || r.apply) check_leaf(context, in, i, ga, p->as_array());
        auto m2 = detail::fresh_bytes(ga.dtype(), ga.shape());
        auto v2 = detail::fresh_bytes(ga.dtype(), ga.shape());
        auto o = detail::fresh_bytes(ga.dtype(), ga.shape());
        jobs.push_back({ga.dtype(), ga.size(), first, ga.bytes(), out.mus[i].as_array().bytes(),
                        out.nus[i].as_array().bytes(),
                        decayed || r.apply ? p->as_array().bytes() : nullptr, m2.data, v2.data,
                        o.data, decayed});
        first += ga.size();
        out.outputs[i] = std::move(o.value);
        out.mus[i] = std::move(m2.value);
        out.nus[i] = std::move(v2.value);
    }
    run_jobs(r, jobs);
    return out;
}

tree adam_state(std::int64_t step, const treedef& def, adam_leaves& r) {
    return record("ScaleByAdamState", {{"count", count_leaf(step)},
                                       {"mu", unflatten(def, std::move(r.mus))},
                                       {"nu", unflatten(def, std::move(r.nus))}});
}
} // namespace

transformation scale_by_adam(double b1, double b2, double eps) {
    transformation t;
    t.init = [](const tree& params) {
        auto zeros = [](const array& a) { return zeros_like(a); };
        return record("ScaleByAdamState", {{"count", count_leaf(0)},
                                           {"mu", per_leaf_state(params, zeros)},
                                           {"nu", per_leaf_state(params, zeros)}});
    };
    t.update = [=](const tree& grads, const tree& state, const tree&) {
        const std::int64_t step = count_of(state, "scale_by_adam") + 1;
        const tree mu_tree = state["mu"], nu_tree = state["nu"];
        auto in =
            align("scale_by_adam", {&grads, &mu_tree, &nu_tree}, {"grads", "state.mu", "state.nu"});
        auto r = adam_pass("scale_by_adam", in, {b1, b2, eps, step, 1.0, 0.0, 1.0, false}, nullptr);
        tree state_out = adam_state(step, in.def, r);
        return update_result{unflatten(in.def, std::move(r.outputs)), std::move(state_out)};
    };
    return t;
}

transformation trace(double decay, bool nesterov) {
    transformation t;
    t.init = [](const tree& params) {
        return record(
            "TraceState",
            {{"trace", per_leaf_state(params, [](const array& a) { return zeros_like(a); })}});
    };
    t.update = [=](const tree& grads, const tree& state, const tree&) {
        const tree tr = state["trace"];
        auto in = align("trace", {&grads, &tr}, {"grads", "state.trace"});
        const std::size_t n = in.leaves[0].size();
        std::vector<tree> updates(n), traces(n);
        for (std::size_t i = 0; i < n; ++i) {
            const tree& g = in.leaves[0][i];
            updates[i] = g;
            traces[i] = in.leaves[1][i];
            if (g.is_none() || !float_leaf(traces[i])) continue;
            const array& ga = g.as_array();
            check_leaf("trace", in, i, ga, traces[i].as_array());
            with_float(ga, [&](auto tag) {
                using T = decltype(tag);
                auto u = detail::fresh<T>(ga.shape());
                auto t2 = detail::fresh<T>(ga.shape());
                T* up = u.data;
                T* tp = t2.data;
                const T* gp = data<T>(ga);
                const T* t0 = data<T>(traces[i].as_array());
                const T D = T(decay);
                for (std::size_t j = 0; j < ga.size(); ++j) {
                    tp[j] = gp[j] + D * t0[j];
                    up[j] = nesterov ? gp[j] + D * tp[j] : tp[j];
                }
                updates[i] = std::move(u.value);
                traces[i] = std::move(t2.value);
                return 0;
            });
        }
        return update_result{
            unflatten(in.def, std::move(updates)),
            record("TraceState", {{"trace", unflatten(in.def, std::move(traces))}})};
    };
    return t;
}

// ---- groups of parameters ------------------------------------------------------------------

labels::labels(tree strings)
    : fn([strings = std::move(strings)](const path& p, const tree&) {
          const tree label = strings.at(p);
          if (!label.is_leaf() || !std::holds_alternative<std::string>(label.value()))
              detail::throw_leaf("multi_transform", p, "a string label", describe(label));
          return label.as<std::string>();
      }) {}

labels::labels(std::vector<std::pair<pattern, std::string>> rules, std::string otherwise)
    : fn([rules = std::move(rules), otherwise = std::move(otherwise)](const path& p, const tree&) {
          for (const auto& [rule, label] : rules)
              if (rule.matches(p)) return label;
          return otherwise;
      }) {}

namespace {

// One label per stored leaf of `params`; a tied position that the labels would put in another
// group than its source is refused (one tie, one optimizer).
std::vector<std::string> leaf_labels(const labels& group, const tree& params) {
    const auto [items, def] = flatten_with_path(params);
    std::vector<std::string> out;
    out.reserve(items.size());
    for (const auto& [p, leaf] : items)
        out.push_back(group.fn(p, leaf));
    for (const auto& info : ties(params)) {
        if (!info.getter.empty()) continue;
        // The source's leaves are a run of the flatten order: found once, not searched.
        const detail::location at =
            detail::locate(*params.node(), info.source, "multi_transform", true);
        for (std::size_t i = at.leaf_offset; i < at.leaf_offset + at.target->num_leaves; ++i) {
            const path tied = info.tied / items[i].first.suffix(info.source.size());
            const std::string label = group.fn(tied, items[i].second);
            if (label != out[i])
                detail::throw_sharing(
                    "multi_transform", tied,
                    fmt::format("the label of its source {} ('{}': one tie, one group)",
                                display_path(keystr(items[i].first)), out[i]),
                    fmt::format("'{}'", label));
        }
    }
    return out;
}

// `t` (of the labels' structure) with None at every leaf not labelled `label`.
tree only(const tree& t, const std::vector<std::string>& label_of, const std::string& label) {
    auto [leaves, def] = flatten(t);
    for (std::size_t i = 0; i < leaves.size(); ++i)
        if (label_of[i] != label) leaves[i] = tree();
    return unflatten(def, std::move(leaves));
}

} // namespace

transformation multi_transform(labels group, std::map<std::string, transformation> transforms) {
    transformation t;
    t.init = [group, transforms](const tree& params) {
        const std::vector<std::string> label_of = leaf_labels(group, params);
        for (std::size_t i = 0; i < label_of.size(); ++i)
            if (!transforms.contains(label_of[i]))
                detail::throw_value("multi_transform", flatten_with_path(params).leaves[i].first,
                                    "a label with a transformation",
                                    fmt::format("'{}'", label_of[i]));
        std::vector<std::pair<std::string, tree>> states;
        for (const auto& [label, inner] : transforms)
            states.emplace_back(label, inner.init(only(params, label_of, label)));
        std::vector<tree> strings(label_of.begin(), label_of.end());
        // The labels travel with the state: update reads them instead of recomputing paths.
        return record("MultiTransformState",
                      {{"labels", unflatten(structure(params), std::move(strings))},
                       {"inner", dict(std::move(states))}});
    };
    t.update = [transforms](const tree& grads, const tree& state, const tree& params) {
        const tree labels_tree = state["labels"];
        auto in = align("multi_transform", {&grads, &labels_tree}, {"grads", "state.labels"});
        std::vector<std::string> label_of;
        label_of.reserve(in.leaves[1].size());
        for (const tree& l : in.leaves[1])
            label_of.push_back(l.as<std::string>());
        std::vector<tree> updates(label_of.size());
        std::vector<std::pair<std::string, tree>> states;
        for (const auto& [label, inner] : transforms) {
            auto r = inner.update(only(grads, label_of, label), state["inner"][label],
                                  only(params, label_of, label));
            // Leaf by leaf at the labels' positions (None, which has no leaves, included).
            const auto mine = flatten_up_to(in.def, r.updates);
            for (std::size_t i = 0; i < label_of.size(); ++i)
                if (label_of[i] == label) updates[i] = mine[i];
            states.emplace_back(label, std::move(r.state));
        }
        return update_result{unflatten(in.def, std::move(updates)),
                             record("MultiTransformState",
                                    {{"labels", labels_tree}, {"inner", dict(std::move(states))}})};
    };
    return t;
}

transformation set_to_zero() {
    transformation t;
    t.init = [](const tree&) { return tree(); };
    t.update = [](const tree& grads, const tree&, const tree&) {
        return update_result{no_updates(grads), tree()};
    };
    return t;
}

transformation freeze(const pattern& frozen, transformation inner) {
    return multi_transform(labels({{frozen, "frozen"}}, "trained"),
                           {{"trained", std::move(inner)}, {"frozen", set_to_zero()}});
}

// ---- accumulation and averaging ------------------------------------------------------------

namespace {

/// An int64 scalar field of a state record, checked.
std::int64_t int_field(const tree& state, const char* field, const char* context) {
    const path at{field_key{field}};
    return counter_value(state.contains(at) ? state[field] : tree(), at, context);
}

/// a * x + b * y over one float leaf, in its own dtype: one fused pass (k::zip).
array axpby(double a, const array& x, double b, const array& y) {
    return with_float(x, [&](auto tag) {
        using T = decltype(tag);
        const T A = T(a), B = T(b);
        return k::zip<T>(x, y, [A, B](T u, T v) { return A * u + B * v; });
    });
}

} // namespace

transformation multi_steps(int every, transformation inner) {
    if (every < 1)
        detail::throw_value("multi_steps", {}, "at least 1 mini-step per step",
                            std::to_string(every));
    transformation t;
    t.init = [every, init = inner.init](const tree& params) {
        return record(
            "MultiStepsState",
            {{"mini_step", count_leaf(0)},
             {"every", count_leaf(every)},
             {"grad_sum", per_leaf_state(params, [](const array& a) { return zeros_like(a); })},
             {"inner", init(params)}});
    };
    t.update = [every, update = inner.update](const tree& grads, const tree& state,
                                              const tree& params) {
        const std::int64_t mini = int_field(state, "mini_step", "multi_steps");
        const std::int64_t of = int_field(state, "every", "multi_steps");
        if (of != every || mini < 0 || mini >= every)
            detail::throw_value(
                "multi_steps", parse_path(".mini_step"),
                fmt::format("a state of multi_steps({}) (mini-step 0 to {})", every, every - 1),
                fmt::format("mini-step {} of {}", mini, of));
        const tree sum = state["grad_sum"];
        auto in = align("multi_steps", {&grads, &sum}, {"grads", "state.grad_sum"});
        const std::size_t n = in.leaves[0].size();
        const bool last = mini + 1 == every;
        // The sum so far (each tied value once: the state has the pruned structure); at the
        // last mini-step the mean goes to the inner transformation and the sum starts again.
        std::vector<tree> sums(n), means(n);
        for (std::size_t i = 0; i < n; ++i) {
            const tree& g = in.leaves[0][i];
            sums[i] = in.leaves[1][i];
            if (g.is_none() || !float_leaf(sums[i])) continue;
            check_leaf("multi_steps", in, i, g.as_array(), sums[i].as_array());
            if (!last) {
                sums[i] = k::add(sums[i].as_array(), g.as_array());
                continue;
            }
            means[i] = axpby(1.0 / every, sums[i].as_array(), 1.0 / every, g.as_array());
            sums[i] = zeros_like(g.as_array());
        }
        update_result r{no_updates(grads), state["inner"]};
        if (last) r = update(unflatten(in.def, std::move(means)), r.state, params);
        return update_result{
            std::move(r.updates),
            record("MultiStepsState", {{"mini_step", count_leaf(last ? 0 : mini + 1)},
                                       {"every", count_leaf(every)},
                                       {"grad_sum", unflatten(in.def, std::move(sums))},
                                       {"inner", std::move(r.state)}})};
    };
    return t;
}

transformation ema(double decay, transformation inner) {
    if (!(decay >= 0.0 && decay <= 1.0))
        detail::throw_value("ema", {}, "a decay in [0, 1]", fmt::format("{}", decay));
    transformation t;
    t.init = [init = inner.init](const tree& params) {
        // The shadow starts as the parameters themselves: arrays are immutable, so it shares
        // their buffers until the first step writes new ones.
        return record("EmaState",
                      {{"count", count_leaf(0)},
                       {"shadow", per_leaf_state(params, [](const array& a) { return a; })},
                       {"inner", init(params)}});
    };
    t.update = [decay, update = inner.update](const tree& grads, const tree& state,
                                              const tree& params) {
        const std::int64_t count = count_of(state, "ema");
        auto r = update(grads, state["inner"], params);
        const tree shadow = state["shadow"];
        auto in =
            align("ema", {&params, &r.updates, &shadow}, {"params", "updates", "state.shadow"});
        std::vector<tree> next = in.leaves[2];
        for (std::size_t i = 0; i < next.size(); ++i) {
            const tree& p = in.leaves[0][i];
            if (!float_leaf(next[i]) || !float_leaf(p)) continue;
            const array& pa = p.as_array();
            check_leaf("ema", in, i, pa, next[i].as_array());
            // shadow <- decay * shadow + (1 - decay) * (params + updates): the parameters
            // after this step, without making them (apply_updates does that once).
            const tree& u = in.leaves[1][i];
            if (u.is_none()) {
                next[i] = axpby(decay, next[i].as_array(), 1.0 - decay, pa);
                continue;
            }
            next[i] = with_float(pa, [&](auto tag) {
                using T = decltype(tag);
                const T D = T(decay), E = T(1.0 - decay);
                return k::zip3<T>(next[i].as_array(), pa, u.as_array(),
                                  [D, E](T s, T p, T du) { return D * s + E * (p + du); });
            });
        }
        return update_result{std::move(r.updates),
                             record("EmaState", {{"count", count_leaf(count + 1)},
                                                 {"shadow", unflatten(in.def, std::move(next))},
                                                 {"inner", std::move(r.state)}})};
    };
    return t;
}

tree ema_params(const tree& state, const tree& params) {
    if (state.kind() != node_kind::record || state.record_name() != "EmaState")
        detail::throw_structure("ema_params", {}, "the state of optim::ema (an EmaState)",
                                describe(state));
    // The shadow has the parameters' pruned structure with None at non-float leaves: those
    // come from `params`, and the ties ride along in the structure.
    return tree_map(
        map_options{is_none_node},
        [](const tree& s, const tree& p) -> tree { return s.is_none() ? p : s; }, state["shadow"],
        params);
}

transformation add_decayed_weights(double weight_decay, leaf_mask mask) {
    transformation t;
    t.init = [](const tree&) { return tree{}; };
    t.update = [weight_decay, fn = mask.fn](const tree& grads, const tree& state,
                                            const tree& params) {
        auto in = align("add_decayed_weights", {&grads, &params}, {"grads", "params"}, true);
        std::vector<tree> updates = in.leaves[0];
        for (std::size_t i = 0; i < updates.size(); ++i) {
            const tree& g = in.leaves[0][i];
            const tree& p = in.leaves[1][i];
            if (g.is_none() || !float_leaf(p) || !fn(in.paths[i], p)) continue;
            check_leaf("add_decayed_weights", in, i, g.as_array(), p.as_array());
            // One pass: g + weight_decay * p.
            updates[i] = with_float(g.as_array(), [&](auto tag) {
                using T = decltype(tag);
                const T wd = static_cast<T>(weight_decay);
                return k::zip<T>(g.as_array(), p.as_array(), [wd](T a, T b) { return a + wd * b; });
            });
        }
        return update_result{unflatten(in.def, std::move(updates)), state};
    };
    return t;
}

namespace {
/// The first float leaf holding a NaN or an infinity (slow path: only after the norm said so).
[[noreturn]] void throw_nonfinite(const tree& grads, double norm) {
    for (const auto& [where, leaf] : views::leaves_with_path(grads)) {
        if (!leaf.is_array() || !is_inexact(leaf.as_array().dtype())) continue;
        const auto values = leaf.as_array().to_doubles();
        const auto bad =
            std::find_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); });
        if (bad != values.end())
            detail::throw_value("clip_by_global_norm", where, "finite gradients",
                                fmt::format("{} at element {} of {} (global norm {})", *bad,
                                            bad - values.begin(), leaf.as_array().describe(),
                                            norm));
    }
    // The squares overflowed although every element is finite.
    detail::throw_value("clip_by_global_norm", {}, "a finite global norm",
                        fmt::format("{} (the sum of squares overflowed)", norm));
}
} // namespace

transformation clip_by_global_norm(double max_norm, nonfinite_policy policy) {
    transformation t;
    t.init = [](const tree&) { return tree{}; };
    // All the clip does is one factor: 1 below the limit, NaN for a non-finite norm under
    // `propagate` (NaN fails `norm > max_norm`: tested explicitly, so a NaN norm scales
    // every update by NaN instead of passing the gradients through unclipped).
    t.gradient_scale = [max_norm, policy](const tree& grads) {
        const double norm = global_norm(grads);
        if (!std::isfinite(norm) && policy == nonfinite_policy::error) throw_nonfinite(grads, norm);
        if (std::isfinite(norm) && !(norm > max_norm)) return 1.0;
        return std::isfinite(norm) ? max_norm / norm : std::numeric_limits<double>::quiet_NaN();
    };
    t.update = [scale = t.gradient_scale](const tree& grads, const tree& state, const tree&) {
        return update_result{scaled(grads, scale(grads)), state};
    };
    return t;
}

transformation sgd(learning_rate lr, double momentum, bool nesterov) {
    if (momentum == 0) return chain({scale_by_learning_rate(std::move(lr))});
    return chain({trace(momentum, nesterov), scale_by_learning_rate(std::move(lr))});
}

namespace {
/// adam and adamw as single passes over the leaves. Their states keep the layout of the
/// chains that define them — (ScaleByAdamState, ScaleByScheduleState), with the decay's None
/// state in the middle for adamw — so checkpoints and resumed runs see no difference.
struct adam_chain {
    const char* name;
    double b1, b2, eps, weight_decay;
    schedule lr;
    std::optional<path_filter> decay; // adamw's mask; adam has none

    [[nodiscard]] std::size_t states() const { return decay ? 3 : 2; }

    /// The updates (or with `apply`, the new parameters) and the new state; nullopt when a
    /// fused step met a leaf only the unfused rules cover.
    [[nodiscard]] std::optional<std::pair<tree, tree>>
    run(const tree& grads, const tree& state, const tree& params, double scale, bool apply) const {
        check_states(name, state, states());
        const tree adam = state[0];
        const std::int64_t step = count_of(adam, "scale_by_adam") + 1;
        const std::int64_t lr_step = count_of(state[states() - 1], "scale_by_learning_rate");
        const tree mu_tree = adam["mu"], nu_tree = adam["nu"];
        // Paths only where the decay mask asks for them: steps build no paths otherwise.
        auto in =
            decay || apply
                ? align(name, {&grads, &mu_tree, &nu_tree, &params},
                        {"grads", "state.mu", "state.nu", "params"}, decay.has_value())
                : align(name, {&grads, &mu_tree, &nu_tree}, {"grads", "state.mu", "state.nu"});
        auto r = adam_pass(name, in, {b1, b2, eps, step, -lr(lr_step), weight_decay, scale, apply},
                           decay ? &*decay : nullptr);
        if (r.irregular) return std::nullopt;
        std::vector<tree> out_states{adam_state(step, in.def, r)};
        if (decay) out_states.push_back(state[1]);
        out_states.push_back(record("ScaleByScheduleState", {{"count", count_leaf(lr_step + 1)}}));
        return std::pair{unflatten(in.def, std::move(r.outputs)),
                         paramtree::tuple(std::move(out_states))};
    }

    /// Sets `t`'s update and fused step to this single pass; `t` is the defining chain.
    void install(transformation& t) const {
        const adam_chain self = *this;
        t.update = [self](const tree& grads, const tree& state, const tree& params) {
            auto r = self.run(grads, state, params, 1.0, false);
            return update_result{std::move(r->first), std::move(r->second)};
        };
        t.fused_step = [self, unfused = t.update](const tree& grads, double scale,
                                                  const tree& state, const tree& params) {
            if (auto r = self.run(grads, state, params, scale, true))
                return step_result{std::move(r->first), std::move(r->second)};
            // The unfused rules, with the scaled gradients written out.
            auto u = unfused(scaled(grads, scale), state, params);
            return step_result{apply_updates(params, u.updates), std::move(u.state)};
        };
    }
};
} // namespace

transformation adam(learning_rate lr, double b1, double b2, double eps) {
    // Defined as chain(scale_by_adam, scale_by_learning_rate), run as one pass.
    transformation t = chain({scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr)});
    adam_chain{"adam", b1, b2, eps, 0.0, lr.fn, std::nullopt}.install(t);
    return t;
}

transformation adamw(learning_rate lr, double b1, double b2, double eps, double weight_decay,
                     leaf_mask mask) {
    // Defined as chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate), whose
    // state layout it keeps, but run as one pass over all leaves: the moments, the decay and
    // the learning rate in a single loop that reads g, m, v, p once and writes m, v and the
    // update once (three passes and two temporary arrays per leaf less).
    transformation t = chain({scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask),
                              scale_by_learning_rate(lr)});
    adam_chain{"adamw", b1, b2, eps, weight_decay, lr.fn, mask.fn}.install(t);
    return t;
}

step_result step(const transformation& t, const tree& grads, const tree& state,
                 const tree& params) {
    if (t.fused_step) return t.fused_step(grads, 1.0, state, params);
    auto r = t.update(grads, state, params);
    return step_result{apply_updates(params, r.updates), std::move(r.state)};
}

tree apply_updates(const tree& params, const tree& updates) {
    auto in = align("apply_updates", {&params, &updates}, {"params", "updates"});
    std::vector<tree> out = in.leaves[0];
    for (std::size_t i = 0; i < out.size(); ++i) {
        const tree& u = in.leaves[1][i];
        if (u.is_none()) continue;
        const tree& p = in.leaves[0][i];
        if (!p.is_array() || !u.is_array())
            detail::throw_leaf("apply_updates", leaf_path(in, i), "array leaves in both trees",
                               fmt::format("{} and {}", describe(p), describe(u)));
        check_leaf("apply_updates", in, i, u.as_array(), p.as_array());
        out[i] = k::add(p.as_array(), u.as_array());
    }
    return unflatten(in.def, std::move(out));
}

double global_norm(const tree& t) {
    double total = 0;
    // A view, not flatten: no vector of leaf handles per step.
    for (const array& a : views::float_arrays(t))
        with_float(a, [&](auto tag) {
            total += k::sum_of_squares(data<decltype(tag)>(a), a.size());
            return 0;
        });
    // float64 squares overflow past 1e154 and vanish below 1e-162 although the norm itself is
    // a normal number: then (rarely, so a second pass is fine) scale by the largest magnitude
    // first, as BLAS nrm2 does. A NaN or an infinity among the values stays non-finite.
    constexpr double tiny = 1e-280;
    if (std::isfinite(total) && total >= tiny) return std::sqrt(total);
    double largest = 0;
    for (const array& a : views::float_arrays(t))
        with_float(a, [&](auto tag) {
            const auto* p = data<decltype(tag)>(a);
            for (std::size_t i = 0; i < a.size(); ++i)
                largest = std::max(largest, std::abs(static_cast<double>(p[i])));
            return 0;
        });
    if (!std::isfinite(largest) || std::isnan(total) || largest == 0) return std::sqrt(total);
    double scaled = 0;
    for (const array& a : views::float_arrays(t))
        with_float(a, [&](auto tag) {
            const auto* p = data<decltype(tag)>(a);
            for (std::size_t i = 0; i < a.size(); ++i) {
                const double x = static_cast<double>(p[i]) / largest;
                scaled += x * x;
            }
            return 0;
        });
    return largest * std::sqrt(scaled);
}

} // namespace paramtree::optim
