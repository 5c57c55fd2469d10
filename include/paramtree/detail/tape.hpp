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

} // namespace paramtree::detail
