// paramtree — the reverse-mode tape and gradient calls over trees.
#include <paramtree/autodiff.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/shared.hpp>

#include "compute/kernels.hpp"
#include "compute/rule_ops.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

namespace paramtree {
namespace detail {

std::shared_ptr<tape> find_tape(input_list inputs) {
    const std::shared_ptr<tape>* found = nullptr;
    for (const array* x : inputs) {
        const auto& slot = x->trace();
        if (!slot) continue;
        if (found && slot->owner != *found)
            throw_sharing("traced operation", {}, "operands traced by one gradient call",
                          "operands from two different gradient calls");
        found = &slot->owner;
    }
    if (!found) return nullptr;
    if ((*found)->closed.load(std::memory_order_acquire))
        throw_sharing("traced operation", {}, "an array traced by a running gradient call",
                      "an array that escaped a gradient call which has returned");
    return *found;
}

namespace {
std::uint32_t push(tape& t, tape_entry entry) {
    const std::lock_guard lock(t.mutex);
    if (t.entries.size() >= std::numeric_limits<std::uint32_t>::max() - 1)
        throw_shape("gradient tape", "fewer than 2^32 recorded operations", "more");
    t.entries.push_back(std::move(entry));
    return static_cast<std::uint32_t>(t.entries.size() - 1);
}
} // namespace

namespace {
/// An entry with inputs `id(0) .. id(n-1)`, recorded on `t`; returns `out` traced by it.
template <class Id>
array push_entry(const std::shared_ptr<tape>& t, array out, std::size_t n, Id id,
                 backward_fn backward, op_info info) {
    tape_entry entry;
    for (std::size_t k = 0; k < n; ++k)
        if (k < entry.inputs.size())
            entry.inputs[k] = id(k);
        else
            entry.more_inputs.push_back(id(k));
    entry.backward = std::move(backward);
    entry.higher_order = info.higher_order;
    entry.precision = current_matmul_precision();
    entry.name = info.name;
    const std::uint32_t at = push(*t, std::move(entry));
    return array_access::with_trace(std::move(out),
                                    std::make_shared<const trace_slot>(trace_slot{t, at}));
}
} // namespace

array record(const std::shared_ptr<tape>& t, array out, input_list inputs, backward_fn backward,
             op_info info) {
    return push_entry(
        t, std::move(out), inputs.size(),
        [&](std::size_t k) { return inputs[k]->trace() ? inputs[k]->trace()->id : untraced; },
        std::move(backward), info);
}

array make_variable(const std::shared_ptr<tape>& t, const array& value) {
    const std::uint32_t id = push(*t, tape_entry{});
    // A new handle on the same buffer: the parameter itself is never copied.
    return value.with_trace(std::make_shared<const trace_slot>(trace_slot{t, id}));
}

namespace {
/// One accumulated cotangent. `writable` points at its buffer when the accumulator allocated
/// it itself (nobody else has seen it), so further contributions are added in place.
struct cotangent {
    std::optional<array> value;
    void* writable = nullptr;
};

void accumulate(cotangent& slot, array g) {
    if (!slot.value) {
        slot.value = std::move(g);
        return;
    }
    const array& have = *slot.value;
    if (have.dtype() != g.dtype() || have.shape() != g.shape())
        throw_shape("gradient accumulation (internal)", have.describe(), g.describe());
    dispatch(have.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, bool>) {
            throw_shape("gradient accumulation", "a numeric cotangent", "bool");
        } else {
            const auto* add = detail::data<T>(g);
            const std::size_t n = g.size();
            if (!slot.writable) {
                auto sum = fresh<T>(have.shape());
                const auto* a = detail::data<T>(have);
                T* out = sum.data;
                kernels::vectorized(n, [&]() PT_INLINE {
                    for (std::size_t i = 0; i < n; ++i)
                        out[i] = static_cast<T>(a[i] + add[i]);
                });
                slot.value = std::move(sum.value);
                slot.writable = out;
                return;
            }
            auto* out = static_cast<T*>(slot.writable);
            kernels::vectorized(n, [&]() PT_INLINE {
                for (std::size_t i = 0; i < n; ++i)
                    out[i] = static_cast<T>(out[i] + add[i]);
            });
        }
    });
}

/// Delivers an entry's input cotangents: to the accumulated slot of each input, or, for the
/// first `redirected` ids of a nested tape (its variables), straight to the enclosing sink.
class sink final : public cotangent_sink {
public:
    sink(std::vector<cotangent>& grads, const tape_entry& entry, std::uint32_t redirected,
         cotangent_sink* outer)
        : grads_(grads), entry_(entry), redirected_(redirected), outer_(outer) {}
    [[nodiscard]] bool needs(std::size_t k) const noexcept override {
        return entry_.input(k) != untraced;
    }
    void add(std::size_t k, array g) override {
        const std::uint32_t id = entry_.input(k);
        if (id == untraced) return;
        if (id < redirected_)
            outer_->add(id, std::move(g));
        else
            accumulate(grads_[id], std::move(g));
    }

private:
    std::vector<cotangent>& grads_;
    const tape_entry& entry_;
    std::uint32_t redirected_;
    cotangent_sink* outer_;
};

/// The reverse sweep over entries [0, grads.size()), from the cotangents seeded in `grads`.
void sweep(tape& t, std::vector<cotangent>& grads, std::uint32_t redirected,
           cotangent_sink* outer) {
    for (std::size_t i = grads.size(); i-- > 0;) {
        const tape_entry& entry = t.entries[i];
        if (!entry.backward || !grads[i].value) continue;
        // Moved out: this cotangent is complete (every use of value i was recorded later)
        // and its memory can go as soon as the inputs have theirs.
        const array g = std::move(*grads[i].value);
        grads[i] = {};
        sink s(grads, entry, redirected, outer);
        const precision_scope as_recorded(entry.precision);
        entry.backward(g, s);
    }
}
} // namespace

std::vector<std::optional<array>> backward(tape& t, const array& output,
                                           const std::vector<std::uint32_t>& vars) {
    std::vector<std::optional<array>> out(vars.size());
    const auto& slot = output.trace();
    if (!slot || slot->owner.get() != &t) return out; // the output does not depend on them
    std::vector<cotangent> grads(slot->id + 1);
    grads[slot->id].value = array::ones(output.shape(), output.dtype());
    sweep(t, grads, 0, nullptr);
    for (std::size_t v = 0; v < vars.size(); ++v)
        if (vars[v] != untraced && vars[v] < grads.size()) out[v] = std::move(grads[vars[v]].value);
    return out;
}

void backward_into(tape& t, std::vector<std::pair<std::uint32_t, array>> seeds,
                   std::size_t variables, cotangent_sink& outer) {
    const auto redirected = static_cast<std::uint32_t>(variables);
    std::uint32_t top = 0;
    for (const auto& seed : seeds)
        top = std::max(top, seed.first + 1);
    std::vector<cotangent> grads(top);
    for (auto& [id, g] : seeds) {
        if (id < redirected)
            outer.add(id, std::move(g)); // an output that is one of the inputs itself
        else
            accumulate(grads[id], std::move(g));
    }
    sweep(t, grads, redirected, &outer);
}

namespace {

/// The sum of two contributions to one cotangent, recorded (both may be traced).
array add_recorded(const array& have, const array& g) {
    if (have.dtype() != g.dtype() || have.shape() != g.shape())
        throw_shape("gradient accumulation (internal)", have.describe(), g.describe());
    return traced({"add", true}, kernels::add(have, g), {&have, &g}, [] {
        return [](const array& c, cotangent_sink& s) {
            if (s.needs(0)) s.add(0, c);
            if (s.needs(1)) s.add(1, c);
        };
    });
}

/// The entries of a differentiable sweep: [lo, top] of the tape.
struct graph_sweep {
    std::shared_ptr<tape> t;
    std::uint32_t lo = 0;
    std::vector<char> relevant;              // depends on a variable
    std::vector<std::optional<array>> grads; // cotangent per entry, by id - lo
    [[nodiscard]] bool wanted(std::uint32_t id) const noexcept {
        return id != untraced && id >= lo && relevant[id - lo] != 0;
    }
};

/// Delivers cotangents of a differentiable sweep, summing them with recorded additions.
class graph_sink final : public cotangent_sink {
public:
    graph_sink(graph_sweep& sweep, const tape_entry& entry, std::uint32_t id)
        : sweep_(sweep), entry_(entry), id_(id) {}
    [[nodiscard]] bool needs(std::size_t k) const noexcept override {
        return sweep_.wanted(entry_.input(k));
    }
    void add(std::size_t k, array g) override {
        const std::uint32_t id = entry_.input(k);
        if (!sweep_.wanted(id)) return;
        auto& slot = sweep_.grads[id - sweep_.lo];
        slot = slot ? add_recorded(*slot, g) : std::move(g);
    }
    [[nodiscard]] bool differentiable() const noexcept override { return true; }
    [[nodiscard]] array output(const array& y) const override {
        return y.with_trace(std::make_shared<const trace_slot>(trace_slot{sweep_.t, id_}));
    }

private:
    graph_sweep& sweep_;
    const tape_entry& entry_;
    std::uint32_t id_;
};

[[noreturn]] void throw_first_order_only(const char* name) {
    throw_value("value_and_grad (differentiating a gradient)", {},
                "operations whose backward rule is differentiable (docs/autodiff.md lists them)",
                fmt::format("the backward of '{}', which has a first-order rule only", name));
}

/// For a rule with no differentiable form: its first-order cotangents, each recorded as
/// depending on the cotangent and the operation's inputs, with a backward that throws. A
/// gradient that is only used as a value is right; differentiating through one is refused
/// by name rather than silently missing the terms this rule cannot provide.
class first_order_sink final : public cotangent_sink {
public:
    first_order_sink(graph_sink& to, graph_sweep& sweep, const tape_entry& entry,
                     const array& cotangent)
        : to_(to), sweep_(sweep), entry_(entry), cotangent_(cotangent) {}
    [[nodiscard]] bool needs(std::size_t k) const noexcept override { return to_.needs(k); }
    void add(std::size_t k, array g) override {
        std::vector<std::uint32_t> ids{cotangent_.trace() ? cotangent_.trace()->id : untraced};
        for (std::size_t j = 0; j < entry_.input_slots(); ++j)
            ids.push_back(entry_.input(j));
        const char* name = entry_.name;
        to_.add(k, push_entry(
                       sweep_.t, std::move(g), ids.size(), [&](std::size_t j) { return ids[j]; },
                       [name](const array&, cotangent_sink&) { throw_first_order_only(name); },
                       {name, false}));
    }

private:
    graph_sink& to_;
    graph_sweep& sweep_;
    const tape_entry& entry_;
    const array& cotangent_;
};

} // namespace

namespace {
/// The differentiable sweep from cotangents `seeds` (traced outputs and their cotangents)
/// down to the entries `vars`.
std::vector<std::optional<array>> graph_backward(const std::shared_ptr<tape>& t,
                                                 const std::vector<std::pair<array, array>>& seeds,
                                                 const std::vector<std::uint32_t>& vars) {
    std::vector<std::optional<array>> out(vars.size());
    std::uint32_t top = 0;
    bool any = false;
    for (const auto& [y, g] : seeds)
        if (y.trace() && y.trace()->owner == t) {
            top = std::max(top, y.trace()->id);
            any = true;
        }
    graph_sweep sweep{t, untraced, {}, {}};
    for (const auto v : vars)
        if (v != untraced) sweep.lo = std::min(sweep.lo, v);
    if (!any || sweep.lo == untraced || sweep.lo > top) return out;
    const std::size_t n = top - sweep.lo + 1;
    // Which entries depend on a variable: the sweep visits only those, and stops at the
    // variables (what lies before them belongs to the enclosing computation).
    std::vector<char> source(n, 0);
    sweep.relevant.assign(n, 0);
    for (const auto v : vars)
        if (v != untraced && v <= top) sweep.relevant[v - sweep.lo] = source[v - sweep.lo] = 1;
    {
        const std::lock_guard lock(t->mutex);
        for (std::uint32_t i = sweep.lo; i <= top; ++i) {
            const tape_entry& e = t->entries[i];
            if (source[i - sweep.lo] || !e.backward) continue;
            for (std::size_t k = 0; k < e.input_slots(); ++k)
                if (e.input(k) < i && sweep.wanted(e.input(k))) {
                    sweep.relevant[i - sweep.lo] = 1;
                    break;
                }
        }
    }
    sweep.grads.resize(n);
    for (const auto& [y, g] : seeds)
        if (y.trace() && y.trace()->owner == t && sweep.wanted(y.trace()->id)) {
            auto& slot = sweep.grads[y.trace()->id - sweep.lo];
            slot = slot ? add_recorded(*slot, g) : g;
        }
    for (std::uint32_t i = top + 1; i-- > sweep.lo;) {
        auto& gi = sweep.grads[i - sweep.lo];
        if (source[i - sweep.lo] || !sweep.relevant[i - sweep.lo] || !gi) continue;
        const array g = std::move(*gi);
        gi.reset();
        // A copy: the rule records on this tape, which may move its entries.
        tape_entry entry;
        {
            const std::lock_guard lock(t->mutex);
            entry = t->entries[i];
        }
        graph_sink s(sweep, entry, i);
        const precision_scope as_recorded(entry.precision);
        if (entry.higher_order) {
            entry.backward(g, s);
        } else {
            first_order_sink fs(s, sweep, entry, g);
            entry.backward(strip_trace(g), fs);
        }
    }
    for (std::size_t v = 0; v < vars.size(); ++v)
        if (vars[v] != untraced && vars[v] <= top)
            out[v] = std::move(sweep.grads[vars[v] - sweep.lo]);
    return out;
}

/// A new entry on `t` standing for the traced `x` and passing its cotangent on to it.
array pass_through(const std::shared_ptr<tape>& t, const array& x) {
    const array* from[1] = {&x};
    return record(t, x.with_trace(nullptr), input_list(from, 1),
                  [](const array& g, cotangent_sink& s) { s.add(0, g); }, {"variable", true});
}
} // namespace

std::vector<std::optional<array>> backward_differentiable(const std::shared_ptr<tape>& t,
                                                          const array& output,
                                                          const std::vector<std::uint32_t>& vars) {
    return graph_backward(t, {{output, array::ones(output.shape(), output.dtype())}}, vars);
}

void composed_vjp(cotangent_sink& s, const std::vector<array>& inputs, const array& cotangent,
                  const std::function<array(const std::vector<array>&)>& f) {
    std::vector<const array*> all{&cotangent};
    for (const array& x : inputs)
        all.push_back(&x);
    const auto t = find_tape(all);
    if (!t) return;
    // Fresh entries for the wanted inputs keep the sweep short: it stops at them.
    std::vector<array> at = inputs;
    std::vector<std::uint32_t> vars;
    for (std::size_t k = 0; k < inputs.size(); ++k)
        if (s.needs(k) && inputs[k].trace()) {
            at[k] = pass_through(t, inputs[k]);
            vars.push_back(at[k].trace()->id);
        } else {
            vars.push_back(untraced);
        }
    const array y = f(at);
    auto grads = graph_backward(t, {{y, cotangent}}, vars);
    for (std::size_t k = 0; k < inputs.size(); ++k)
        if (grads[k]) s.add(k, std::move(*grads[k]));
}

namespace {
// The gradient call whose `f` runs on this thread. Thread-local dynamic scope (like
// PyTorch's grad mode or JAX's trace stack), not shared state: each thread sees only the
// scopes it opened, and they nest strictly (RAII).
thread_local const std::shared_ptr<tape>* enclosing = nullptr;
} // namespace

const std::shared_ptr<tape>* enclosing_tape() noexcept {
    return enclosing;
}

enclosing_scope::enclosing_scope(const std::shared_ptr<tape>* t) noexcept : previous_(enclosing) {
    enclosing = t;
}

enclosing_scope::~enclosing_scope() {
    enclosing = previous_;
}

tape_scope::tape_scope() : tape_(std::make_shared<tape>()) {}

tape_scope::~tape_scope() {
    tape_->closed.store(true, std::memory_order_release);
    // Recorded closures hold traced arrays, which hold the tape: clearing breaks the cycle.
    std::vector<tape_entry> entries;
    {
        const std::lock_guard lock(tape_->mutex);
        entries.swap(tape_->entries);
    }
}

std::vector<array> record_multi(const std::shared_ptr<tape>& t, std::vector<array> outputs,
                                input_list inputs, multi_backward_fn backward, op_info info) {
    std::vector<std::size_t> traced_outputs;
    for (std::size_t j = 0; j < outputs.size(); ++j)
        if (is_inexact(outputs[j].dtype())) traced_outputs.push_back(j);
    if (traced_outputs.empty()) return outputs;
    if (outputs.size() == 1) {
        outputs[0] = record(
            t, std::move(outputs[0]), inputs,
            [backward = std::move(backward)](const array& g, cotangent_sink& s) {
                const std::optional<array> one[1] = {g};
                backward(one, s);
            },
            info);
        return outputs;
    }
    // Several outputs: each output's entry parks its cotangent in `parked` and sends the hub
    // a token (a 0-d zero); the hub, recorded before them, runs after all of them.
    auto parked = std::make_shared<std::vector<std::optional<array>>>(outputs.size());
    const array token = array::zeros({}, dtype::float32);
    const array hub = record(
        t, token, inputs,
        [parked, backward = std::move(backward)](const array&, cotangent_sink& s) {
            std::vector<std::optional<array>> cotangents;
            cotangents.swap(*parked); // freed when this backward is done
            backward(cotangents, s);
        },
        info);
    for (const std::size_t j : traced_outputs) {
        const array* from[1] = {&hub};
        outputs[j] = record(
            t, std::move(outputs[j]), input_list(from, 1),
            [parked, j, token](const array& g, cotangent_sink& s) {
                (*parked)[j] = g;
                s.add(0, token);
            },
            info);
    }
    return outputs;
}

// ---- gradient calls over trees --------------------------------------------------------------

void grad_session::open(const std::vector<const array*>& traced_inputs) {
    // An argument traced by an enclosing gradient call, or any gradient call running `f` on
    // this thread: this gradient will be differentiated, so it records on that tape.
    if (auto t = find_tape(traced_inputs)) {
        tape_ = std::move(t);
        nested_ = true;
    } else if (const auto* e = enclosing_tape(); e && !(*e)->closed.load()) {
        tape_ = *e;
        nested_ = true;
    } else {
        own_.emplace();
        tape_ = own_->get();
    }
    enclosing_.emplace(&tape_);
}

array grad_session::variable(const array& x) {
    // Traced by the enclosing call: a new entry that passes its cotangent on, so this
    // gradient stops here and the enclosing one continues through it.
    array v = x.trace() ? pass_through(tape_, x) : make_variable(tape_, x);
    vars_.push_back(v.trace()->id);
    return v;
}

tree grad_session::trace(const tree& params, const leaf_filter& filter) {
    auto [leaves, def] = flatten(params);
    def_ = std::move(def);
    std::vector<char> selected(leaves.size(), 0);
    std::vector<const array*> traced_inputs;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        const tree& leaf = leaves[i];
        selected[i] = filter(leaf) ? 1 : 0;
        // Key paths are built only to name a rejected leaf, not on every call.
        if (selected[i] && !is_float_array(leaf))
            throw_leaf("value_and_grad", def_.leaf_paths()[i],
                       "a float array leaf to differentiate", describe(leaf));
        if (selected[i] && leaf.as_array().trace()) traced_inputs.push_back(&leaf.as_array());
    }
    open(traced_inputs);
    std::vector<tree> traced;
    traced.reserve(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        tree& leaf = leaves[i];
        if (selected[i]) {
            traced.emplace_back(variable(leaf.as_array()));
        } else {
            vars_.push_back(untraced);
            traced.push_back(leaf);
        }
        leaves_.push_back(std::move(leaf));
    }
    // `f` sees the model with its ties filled in: each tied position holds the one traced
    // source (or a recorded transform of it), so the tape sums every use into one gradient.
    return expand(unflatten(def_, std::move(traced)));
}

array grad_session::trace(const array& x) {
    if (!is_inexact(x.dtype()))
        throw_leaf("value_and_grad", {}, "a float array to differentiate", x.describe());
    open({&x}); // find_tape passes over it if untraced
    is_array_ = true;
    leaves_.emplace_back(x);
    return variable(x);
}

tree grad_session::gradient(const array& value) {
    enclosing_.reset(); // `f` has returned; the backward pass is not part of it
    if (!is_inexact(value.dtype()) || value.size() != 1)
        throw_shape("value_and_grad", "f to return a one-element float array",
                    fmt::format("{}", value.describe()));
    auto cotangents =
        nested_ ? backward_differentiable(tape_, value, vars_) : backward(*tape_, value, vars_);
    std::vector<tree> grads;
    grads.reserve(leaves_.size());
    for (std::size_t i = 0; i < leaves_.size(); ++i) {
        if (vars_[i] == untraced) {
            grads.emplace_back(); // not differentiated: None
            continue;
        }
        const array& leaf = leaves_[i].as_array();
        // A leaf the value does not depend on has a zero gradient, not a missing one.
        grads.emplace_back(cotangents[i] ? result(*cotangents[i])
                                         : array::zeros(leaf.shape(), leaf.dtype()));
    }
    if (is_array_) return grads.front();
    return unflatten(def_, std::move(grads));
}

array grad_session::result(const array& x) const {
    return nested_ ? x : strip_trace(x);
}

tree grad_session::result(const tree& t) const {
    return nested_ ? t : strip_traces(t);
}

array strip_trace(const array& x) {
    return x.trace() ? x.with_trace(nullptr) : x;
}

tree strip_traces(const tree& t) {
    return tree_map(
        [](const tree& leaf) {
            return leaf.is_array() ? tree(strip_trace(leaf.as_array())) : leaf;
        },
        t);
}

array tree_vdot(const tree& a, const tree& b) {
    // flatten_all checks that the structures agree and names the first path where they do not.
    const tree* both[] = {&a, &b};
    const auto in =
        flatten_all("hvp", both, {}, false, std::array<std::string_view, 2>{"the gradient", "v"});
    std::optional<array> total;
    for (std::size_t i = 0; i < in.leaves[0].size(); ++i) {
        const tree& x = in.leaves[0][i];
        const tree& y = in.leaves[1][i];
        if (!x.is_array() || !y.is_array())
            throw_leaf("hvp", in.def.leaf_paths()[i], "arrays in both the gradient and v",
                       describe(y));
        const array p = sum(x.as_array() * y.as_array());
        total = total ? *total + p : p;
    }
    return total ? *total : array::zeros({});
}

std::pair<tree, treedef> leaf_list(const tree& t) {
    auto [leaves, def] = flatten(t);
    return {list(std::move(leaves)), std::move(def)};
}

tree from_leaf_list(const treedef& def, const tree& flat) {
    return unflatten(def, flat.children());
}

void throw_bad_argnum(std::size_t argnum, std::size_t count) {
    throw_path("value_and_grad", {}, fmt::format("an argnum below {}", count),
               fmt::format("argnum {}", argnum));
}

void throw_not_differentiable(std::size_t argnum) {
    throw_leaf("value_and_grad", {}, "a pt::tree or pt::array argument to differentiate",
               fmt::format("argument {} of another type", argnum));
}

// A reshape or dtype conversion of a traced array, recorded (array.cpp calls these).
array traced_reshape(const array& in, array out) {
    return traced({"reshape", true}, std::move(out), {&in}, [&] {
        return [shape = in.shape()](const array& g, cotangent_sink& s) {
            s.add(0, rule_ops(s).view(g, shape));
        };
    });
}
array traced_astype(const array& in, array out) {
    // Only float-to-float conversions carry a gradient (as in JAX).
    if (!is_inexact(in.dtype()) || !is_inexact(out.dtype())) return out;
    // g.astype records itself when g is traced: the rule is differentiable as written.
    return traced({"astype", true}, std::move(out), {&in}, [&] {
        return [d = in.dtype()](const array& g, cotangent_sink& s) { s.add(0, g.astype(d)); };
    });
}
} // namespace detail

} // namespace paramtree
