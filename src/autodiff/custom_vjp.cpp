// paramtree — user-defined differentiable operations on the gradient tape.
#include <paramtree/autodiff.hpp>
#include <paramtree/custom_vjp.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>

#include <memory>

#include <fmt/format.h>

namespace paramtree::detail {

namespace {

/// Runs `f`; a paramtree error raised inside comes back with the operation named in its
/// context (`take (in custom op 'lookup' forward)`), at the same path, of the same type.
template <class F>
decltype(auto) named(const std::string& name, const char* phase, F&& f) {
    try {
        return std::forward<F>(f)();
    } catch (const error& e) {
        rethrow_as(e, fmt::format("{} (in custom op '{}' {})", e.context(), name, phase));
    }
}

} // namespace

std::vector<array>
call_custom_vjp(const std::string& name, std::span<const array* const> inputs,
                const std::function<custom_forward(std::span<const array> plain)>& forward) {
    const auto t = find_tape(inputs);
    std::vector<array> plain;
    plain.reserve(inputs.size());
    for (const array* x : inputs)
        plain.push_back(strip_trace(*x));
    custom_forward result = named(name, "forward", [&] { return forward(plain); });
    const std::string context = fmt::format("custom op '{}' forward", name);
    if (result.outputs.empty())
        throw_shape(context, "at least one output", "an empty vector of outputs");
    for (std::size_t j = 0; j < result.outputs.size(); ++j)
        if (result.outputs[j].trace())
            throw_sharing(context, {}, "outputs computed from the operation's inputs",
                          fmt::format("output {} traced by the gradient call: forward used a "
                                      "traced array it did not receive as an input (pass the "
                                      "array as an input instead of capturing it)",
                                      j));
    if (!t) return std::move(result.outputs);

    // What backward needs of the outputs: their shapes and dtypes, for the zero cotangent of
    // an output nothing used. Not the outputs themselves: their memory is not held.
    std::vector<std::pair<shape_type, dtype>> output_types;
    output_types.reserve(result.outputs.size());
    for (const array& out : result.outputs)
        output_types.emplace_back(out.shape(), out.dtype());
    std::vector<std::pair<shape_type, dtype>> input_types;
    input_types.reserve(plain.size());
    for (const array& x : plain)
        input_types.emplace_back(x.shape(), x.dtype());

    // The tape keeps the name as a C string for its errors ("the backward of 'rms_norm'"):
    // the backward owns it, so it lives as long as the entry.
    auto label = std::make_shared<const std::string>(name);
    const char* label_text = label->c_str();
    auto backward = [name, label, output_types = std::move(output_types),
                     input_types = std::move(input_types), user = std::move(result.backward)](
                        std::span<const std::optional<array>> cotangents, cotangent_sink& sink) {
        (void)label; // kept alive with the entry: the tape's name for it
        std::vector<array> g;
        g.reserve(cotangents.size());
        for (std::size_t j = 0; j < cotangents.size(); ++j)
            g.push_back(cotangents[j]
                            ? *cotangents[j]
                            : array::zeros(output_types[j].first, output_types[j].second));
        auto got = named(name, "backward", [&] { return user(g); });
        const std::string where = fmt::format("custom op '{}' backward", name);
        if (got.size() != input_types.size())
            throw_shape(where,
                        fmt::format("{} cotangent{} (one per input)", input_types.size(),
                                    input_types.size() == 1 ? "" : "s"),
                        fmt::format("{}", got.size()));
        for (std::size_t k = 0; k < got.size(); ++k) {
            if (!got[k] || !sink.needs(k)) continue;
            const auto& [shape, type] = input_types[k];
            if (got[k]->shape() != shape || got[k]->dtype() != type)
                throw_shape(fmt::format("{}, cotangent of input {}", where, k),
                            fmt::format("{} (the input's shape and dtype)", describe(type, shape)),
                            got[k]->describe());
            sink.add(k, strip_trace(*got[k]));
        }
    };
    return record_multi(t, std::move(result.outputs), inputs, std::move(backward),
                        op_info{label_text, false});
}

} // namespace paramtree::detail
