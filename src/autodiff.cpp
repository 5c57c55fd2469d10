// paramtree — the reverse-mode tape and gradient calls over trees.
#include <paramtree/autodiff.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/shared.hpp>

#include "kernels.hpp"

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

array record(const std::shared_ptr<tape>& t, array out, input_list inputs, backward_fn backward) {
    tape_entry entry;
    std::size_t k = 0;
    for (const array* x : inputs) {
        const std::uint32_t id = x->trace() ? x->trace()->id : untraced;
        if (k < entry.inputs.size())
            entry.inputs[k] = id;
        else
            entry.more_inputs.push_back(id);
        ++k;
    }
    entry.backward = std::move(backward);
    const std::uint32_t id = push(*t, std::move(entry));
    return array_access::with_trace(std::move(out),
                                    std::make_shared<const trace_slot>(trace_slot{t, id}));
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
            const auto* add = reinterpret_cast<const T*>(g.bytes());
            const std::size_t n = g.size();
            if (!slot.writable) {
                auto sum_data = array_access::allocate(have.dtype(), have.shape());
                array sum = std::move(sum_data.first);
                void* data = sum_data.second; // named: clang 14 cannot capture bindings
                const auto* a = reinterpret_cast<const T*>(have.bytes());
                auto* out = static_cast<T*>(data);
                kernels::vectorized(n, [&]() PT_INLINE {
                    for (std::size_t i = 0; i < n; ++i)
                        out[i] = static_cast<T>(a[i] + add[i]);
                });
                slot.value = std::move(sum);
                slot.writable = data;
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
                                input_list inputs, multi_backward_fn backward) {
    std::vector<std::size_t> traced_outputs;
    for (std::size_t j = 0; j < outputs.size(); ++j)
        if (is_inexact(outputs[j].dtype())) traced_outputs.push_back(j);
    if (traced_outputs.empty()) return outputs;
    if (outputs.size() == 1) {
        outputs[0] = record(t, std::move(outputs[0]), inputs,
                            [backward = std::move(backward)](const array& g, cotangent_sink& s) {
                                const std::optional<array> one[1] = {g};
                                backward(one, s);
                            });
        return outputs;
    }
    // Several outputs: each output's entry parks its cotangent in `parked` and sends the hub
    // a token (a 0-d zero); the hub, recorded before them, runs after all of them.
    auto parked = std::make_shared<std::vector<std::optional<array>>>(outputs.size());
    const array token = array::zeros({}, dtype::float32);
    const array hub =
        record(t, token, inputs,
               [parked, backward = std::move(backward)](const array&, cotangent_sink& s) {
                   std::vector<std::optional<array>> cotangents;
                   cotangents.swap(*parked); // freed when this backward is done
                   backward(cotangents, s);
               });
    for (const std::size_t j : traced_outputs) {
        const array* from[1] = {&hub};
        outputs[j] = record(t, std::move(outputs[j]), input_list(from, 1),
                            [parked, j, token](const array& g, cotangent_sink& s) {
                                (*parked)[j] = g;
                                s.add(0, token);
                            });
    }
    return outputs;
}

// ---- gradient calls over trees --------------------------------------------------------------

namespace {
/// Re-tracing an array that an outer gradient call traced would cut it off from the outer
/// tape: the outer gradient would silently be zero. Until nested tapes exist, refuse.
[[noreturn]] void throw_nested(const path& p) {
    throw_sharing("value_and_grad", p, "an argument not traced by an enclosing gradient call",
                  "an array traced by an outer value_and_grad: grad of grad (nested "
                  "gradients) is not supported; differentiate the outer function only");
}
} // namespace

tree grad_session::trace(const tree& params, const leaf_filter& filter) {
    auto [leaves, def] = flatten(params);
    def_ = std::move(def);
    std::vector<tree> traced;
    traced.reserve(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        tree& leaf = leaves[i];
        const bool selected = filter(leaf);
        // Key paths are built only to name a rejected leaf, not on every call.
        if (selected && !is_float_array(leaf))
            throw_leaf("value_and_grad", def_.leaf_paths()[i],
                       "a float array leaf to differentiate", describe(leaf));
        if (selected) {
            if (leaf.as_array().trace()) throw_nested(def_.leaf_paths()[i]);
            array v = make_variable(tape_.get(), leaf.as_array());
            vars_.push_back(v.trace()->id);
            traced.emplace_back(std::move(v));
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
    if (x.trace()) throw_nested({});
    is_array_ = true;
    array v = make_variable(tape_.get(), x);
    vars_.push_back(v.trace()->id);
    leaves_.emplace_back(x);
    return v;
}

tree grad_session::gradient(const array& value) {
    if (!is_inexact(value.dtype()) || value.size() != 1)
        throw_shape("value_and_grad", "f to return a one-element float array",
                    fmt::format("{}", value.describe()));
    auto cotangents = backward(*tape_.get(), value, vars_);
    std::vector<tree> grads;
    grads.reserve(leaves_.size());
    for (std::size_t i = 0; i < leaves_.size(); ++i) {
        if (vars_[i] == untraced) {
            grads.emplace_back(); // not differentiated: None
            continue;
        }
        const array& leaf = leaves_[i].as_array();
        // A leaf the value does not depend on has a zero gradient, not a missing one.
        grads.emplace_back(cotangents[i] ? strip_trace(*cotangents[i])
                                         : array::zeros(leaf.shape(), leaf.dtype()));
    }
    if (is_array_) return grads.front();
    return unflatten(def_, std::move(grads));
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

void throw_bad_argnum(std::size_t argnum, std::size_t count) {
    throw_path("value_and_grad", {}, fmt::format("an argnum below {}", count),
               fmt::format("argnum {}", argnum));
}

void throw_not_differentiable(std::size_t argnum) {
    throw_leaf("value_and_grad", {}, "a pt::tree or pt::array argument to differentiate",
               fmt::format("argument {} of another type", argnum));
}

} // namespace detail
} // namespace paramtree
