// paramtree — internal: the reverse-mode tape behind value_and_grad.
// A tape belongs to one gradient call; nothing global points at it. A traced array carries a
// `trace_slot` naming its tape and its position on it, so an operation finds the tape through
// its inputs: two threads taking gradients at once use two tapes and never meet.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/precision.hpp>

namespace paramtree::detail {

struct tape;

/// What a traced array carries: its tape and the id of the value on it.
struct trace_slot {
    std::shared_ptr<tape> owner;
    std::uint32_t id = 0;
};

inline constexpr std::uint32_t untraced = 0xffffffffu;

/// Where a backward function delivers the cotangents of its inputs.
class cotangent_sink {
public:
    virtual ~cotangent_sink() = default;
    /// True when input `k` is traced, so its cotangent is wanted.
    [[nodiscard]] virtual bool needs(std::size_t k) const noexcept = 0;
    /// Adds `g` (which must have input `k`'s shape and dtype) to input `k`'s cotangent.
    virtual void add(std::size_t k, array g) = 0;
    /// True when the gradient being computed will itself be differentiated (a `grad` inside
    /// a differentiated function): the cotangent is traced, and a rule recorded as
    /// `higher_order` must then compute with the differentiable operations of ops.hpp, on
    /// the traced inputs it captured, so that its own arithmetic is recorded. Otherwise (the
    /// common, first-order case) rules compute with kernels and nothing is recorded.
    [[nodiscard]] virtual bool differentiable() const noexcept { return false; }
    /// In a differentiable pass: `y`, the operation's output as computed in the forward pass
    /// (which rules keep untraced), with the operation's own trace, for rules whose
    /// derivative is written in terms of it (exp, tanh, softmax). `y` itself otherwise.
    [[nodiscard]] virtual array output(const array& y) const { return y; }
};

/// Maps the cotangent of an op's output to cotangents of its inputs. Uses kernels only: the
/// backward pass itself is not recorded.
using backward_fn = std::function<void(const array& cotangent, cotangent_sink& sink)>;

/// What an operation tells the tape about itself: its name (for errors) and whether its
/// backward rule also has the differentiable form (`cotangent_sink::differentiable`), so
/// that a gradient through it can be differentiated again.
struct op_info {
    const char* name = "an operation";
    bool higher_order = false;
};

struct tape_entry {
    // Tape ids of the inputs (`untraced` for constants); most ops have at most three, so
    // those live inline and only wider ones (concatenate) allocate.
    std::array<std::uint32_t, 3> inputs{untraced, untraced, untraced};
    // op_info's fields, unpacked so the flag sits in the padding after `inputs`: entries are
    // moved whenever the tape grows, and the tape benchmark sees every byte (88 -> 80).
    bool higher_order = false;
    // The matmul precision the forward ran under: its backward's products run under it too,
    // wherever the gradient is computed (PyTorch's autocast does the same). Also padding.
    matmul_precision precision = matmul_precision::float32;
    const char* name = "an operation";
    std::vector<std::uint32_t> more_inputs;
    backward_fn backward; // empty for variables (the differentiated leaves)

    /// Input slots to look at: the inline three (unused ones hold `untraced`) and the rest.
    [[nodiscard]] std::size_t input_slots() const noexcept {
        return inputs.size() + more_inputs.size();
    }
    [[nodiscard]] std::uint32_t input(std::size_t k) const noexcept {
        return k < inputs.size() ? inputs[k] : more_inputs[k - inputs.size()];
    }
};

struct tape {
    std::mutex mutex; // a function being differentiated may run ops on several threads
    std::vector<tape_entry> entries;
    std::atomic<bool> closed{false}; // set when the call that owns the tape returns
};

using input_list = std::span<const array* const>;

/// The tape the traced arrays among `inputs` belong to, or null if none is traced. Throws
/// sharing_error if they come from two gradient calls, or from one that has returned.
[[nodiscard]] std::shared_ptr<tape> find_tape(input_list inputs);

/// Records `out = op(inputs...)` on `t` and returns `out` traced. `backward` receives the
/// cotangent of `out` and delivers one per traced input.
[[nodiscard]] array record(const std::shared_ptr<tape>& t, array out, input_list inputs,
                           backward_fn backward, op_info info = {});

/// `record` if any input is traced, else `out` unchanged; `make_backward` is called only
/// then, so an untraced call pays nothing for the closure.
template <class MakeBackward>
[[nodiscard]] array traced(op_info info, array out, input_list inputs,
                           MakeBackward&& make_backward) {
    auto t = find_tape(inputs);
    if (!t) return out;
    return record(t, std::move(out), inputs, backward_fn(make_backward()), info);
}
template <class MakeBackward>
[[nodiscard]] array traced(op_info info, array out, std::initializer_list<const array*> inputs,
                           MakeBackward&& make_backward) {
    return traced(info, std::move(out), input_list(inputs.begin(), inputs.size()),
                  std::forward<MakeBackward>(make_backward));
}
template <class MakeBackward>
[[nodiscard]] array traced(array out, input_list inputs, MakeBackward&& make_backward) {
    return traced(op_info{}, std::move(out), inputs, std::forward<MakeBackward>(make_backward));
}
template <class MakeBackward>
[[nodiscard]] array traced(array out, std::initializer_list<const array*> inputs,
                           MakeBackward&& make_backward) {
    return traced(op_info{}, std::move(out), input_list(inputs.begin(), inputs.size()),
                  std::forward<MakeBackward>(make_backward));
}

/// The recorded form of `array::reshape` / `array::astype` on a traced array: `out` is the
/// untraced result; the gradient flows back reshaped / converted. Here, with the tape, so
/// that `array` depends on the tape and not on the operations built over it.
[[nodiscard]] array traced_reshape(const array& in, array out);
[[nodiscard]] array traced_astype(const array& in, array out);

/// A new variable on `t` holding `value` (a differentiated leaf).
[[nodiscard]] array make_variable(const std::shared_ptr<tape>& t, const array& value);

/// Runs the backward pass from `output` (seeded with ones) and returns the cotangent of every
/// variable in `vars` (nullopt where the output does not depend on it).
[[nodiscard]] std::vector<std::optional<array>> backward(tape& t, const array& output,
                                                         const std::vector<std::uint32_t>& vars);

/// The backward pass of a gradient taken inside a differentiated function (grad of grad):
/// like `backward`, but every rule runs in its differentiable form, recording its arithmetic
/// on `t` after `output`, so the cotangents returned are traced arrays the enclosing
/// gradient differentiates. Only entries that depend on `vars` are visited (the enclosing
/// computation's other entries are constants here), and the sweep stops at `vars`. A rule
/// without a differentiable form gives its first-order cotangent, recorded so that
/// differentiating through it again throws an error naming the operation.
[[nodiscard]] std::vector<std::optional<array>>
backward_differentiable(const std::shared_ptr<tape>& t, const array& output,
                        const std::vector<std::uint32_t>& vars);

/// The differentiable form of a rule whose first-order form is a fused kernel: records
/// `f(inputs)` — the same function written with the differentiable operations of ops.hpp —
/// on the inputs' tape and hands `s` the cotangents of the inputs it needs for `cotangent`,
/// computed by a differentiable sweep of that recording. (Layer norm, RMS norm and attention
/// get their second-order rules this way.)
void composed_vjp(cotangent_sink& s, const std::vector<array>& inputs, const array& cotangent,
                  const std::function<array(const std::vector<array>&)>& f);

/// The innermost gradient call running `f` on this thread, or null. A `grad` inside a
/// differentiated function records on it, which is what makes the inner gradient
/// differentiable; it is set only while `f` runs (not during the backward pass).
[[nodiscard]] const std::shared_ptr<tape>* enclosing_tape() noexcept;

/// Marks `t` as the tape of the gradient call whose `f` is running on this thread, for the
/// object's lifetime (scopes nest; each restores the one before).
class enclosing_scope {
public:
    explicit enclosing_scope(const std::shared_ptr<tape>* t) noexcept;
    ~enclosing_scope();
    enclosing_scope(const enclosing_scope&) = delete;
    enclosing_scope& operator=(const enclosing_scope&) = delete;

private:
    const std::shared_ptr<tape>* previous_;
};

/// A fresh tape owned for one scope: closed and cleared on the way out (also on an
/// exception), so traced arrays that escape can no longer record, and the closures recorded
/// on it (which hold traced arrays, which hold the tape) do not keep it alive in a cycle.
class tape_scope {
public:
    tape_scope();
    ~tape_scope();
    tape_scope(const tape_scope&) = delete;
    tape_scope& operator=(const tape_scope&) = delete;
    [[nodiscard]] const std::shared_ptr<tape>& get() const noexcept { return tape_; }

private:
    std::shared_ptr<tape> tape_;
};

/// The backward of an operation with several outputs: the cotangent of each output (nullopt
/// for an output nothing downstream used) to cotangents of its inputs.
using multi_backward_fn =
    std::function<void(std::span<const std::optional<array>> cotangents, cotangent_sink& sink)>;

/// Records an operation with any number of outputs on `t` and returns them traced (each
/// float output; other dtypes come back untraced). With one output this is `record`; with
/// more, a hidden entry takes the inputs and one entry per output hands its cotangent to it,
/// so `backward` runs once, with every output's cotangent, after all of them are complete.
/// `info.name` must live as long as the tape (a literal, or a string `backward` owns).
[[nodiscard]] std::vector<array> record_multi(const std::shared_ptr<tape>& t,
                                              std::vector<array> outputs, input_list inputs,
                                              multi_backward_fn backward, op_info info = {});

/// The backward pass of a nested tape whose first `variables` entries stand for the inputs
/// of an enclosing operation: starts from the cotangents `seeds` (tape id, cotangent) and
/// hands every contribution to variable k straight to `outer.add(k, ...)`, one by one in the
/// order the sweep produces them. The enclosing tape then sums them exactly as it would have
/// summed the same operations recorded on it directly (rematerialisation relies on this for
/// bitwise-identical gradients).
void backward_into(tape& t, std::vector<std::pair<std::uint32_t, array>> seeds,
                   std::size_t variables, cotangent_sink& outer);

} // namespace paramtree::detail
