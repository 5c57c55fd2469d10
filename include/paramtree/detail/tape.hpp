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
};

/// Maps the cotangent of an op's output to cotangents of its inputs. Uses kernels only: the
/// backward pass itself is not recorded.
using backward_fn = std::function<void(const array& cotangent, cotangent_sink& sink)>;

struct tape_entry {
    // Tape ids of the inputs (`untraced` for constants); most ops have at most three, so
    // those live inline and only wider ones (concatenate) allocate.
    std::array<std::uint32_t, 3> inputs{untraced, untraced, untraced};
    std::vector<std::uint32_t> more_inputs;
    backward_fn backward; // empty for variables (the differentiated leaves)

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
                           backward_fn backward);

/// `record` if any input is traced, else `out` unchanged; `make_backward` is called only
/// then, so an untraced call pays nothing for the closure.
template <class MakeBackward>
[[nodiscard]] array traced(array out, input_list inputs, MakeBackward&& make_backward) {
    auto t = find_tape(inputs);
    if (!t) return out;
    return record(t, std::move(out), inputs, backward_fn(make_backward()));
}
template <class MakeBackward>
[[nodiscard]] array traced(array out, std::initializer_list<const array*> inputs,
                           MakeBackward&& make_backward) {
    return traced(std::move(out), input_list(inputs.begin(), inputs.size()),
                  std::forward<MakeBackward>(make_backward));
}

/// A new variable on `t` holding `value` (a differentiated leaf).
[[nodiscard]] array make_variable(const std::shared_ptr<tape>& t, const array& value);

/// Runs the backward pass from `output` (seeded with ones) and returns the cotangent of every
/// variable in `vars` (nullopt where the output does not depend on it).
[[nodiscard]] std::vector<std::optional<array>> backward(tape& t, const array& output,
                                                         const std::vector<std::uint32_t>& vars);

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
[[nodiscard]] std::vector<array> record_multi(const std::shared_ptr<tape>& t,
                                              std::vector<array> outputs, input_list inputs,
                                              multi_backward_fn backward);

/// The backward pass of a nested tape whose first `variables` entries stand for the inputs
/// of an enclosing operation: starts from the cotangents `seeds` (tape id, cotangent) and
/// hands every contribution to variable k straight to `outer.add(k, ...)`, one by one in the
/// order the sweep produces them. The enclosing tape then sums them exactly as it would have
/// summed the same operations recorded on it directly (rematerialisation relies on this for
/// bitwise-identical gradients).
void backward_into(tape& t, std::vector<std::pair<std::uint32_t, array>> seeds,
                   std::size_t variables, cotangent_sink& outer);

} // namespace paramtree::detail
