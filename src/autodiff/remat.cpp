// paramtree — rematerialisation: a call recorded as one operation, recomputed for backward.
#include <paramtree/autodiff.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/tape.hpp>
#include <paramtree/remat.hpp>

#include <fmt/format.h>

namespace paramtree::detail {

namespace {

/// Refuses a result leaf that the enclosing gradient call traced: the inputs were passed
/// untraced, so a traced result can only come from a captured traced array.
void check_untraced(const std::vector<tree>& leaves, const treedef& def) {
    for (std::size_t j = 0; j < leaves.size(); ++j)
        if (leaves[j].is_array() && leaves[j].as_array().trace())
            throw_sharing("remat", def.leaf_paths()[j], "a result computed from f's arguments",
                          "a value traced by the gradient call: f used a traced array it did "
                          "not receive as an argument (pass it as an argument instead of "
                          "capturing it)");
}

} // namespace

tree remat_call(std::vector<tree> leaves, std::shared_ptr<const leaf_call> call) {
    std::vector<const array*> inputs;
    std::vector<std::size_t> positions;
    for (std::size_t i = 0; i < leaves.size(); ++i)
        if (leaves[i].is_array() && leaves[i].as_array().trace()) {
            inputs.push_back(&leaves[i].as_array());
            positions.push_back(i);
        }
    if (inputs.empty()) return (*call)(leaves);
    const auto t = find_tape(inputs);

    // The forward run sees plain values, so none of its operations is recorded.
    std::vector<tree> plain = leaves;
    for (const std::size_t i : positions)
        plain[i] = tree(strip_trace(plain[i].as_array()));
    auto [out_leaves, out_def] = flatten((*call)(plain));
    check_untraced(out_leaves, out_def);

    // The array results are the operation's outputs.
    std::vector<std::size_t> out_positions;
    std::vector<array> outputs;
    for (std::size_t j = 0; j < out_leaves.size(); ++j)
        if (out_leaves[j].is_array()) {
            out_positions.push_back(j);
            outputs.push_back(out_leaves[j].as_array());
        }

    auto backward = [call, plain = std::move(plain), positions, out_positions, out_def = out_def](
                        std::span<const std::optional<array>> cotangents, cotangent_sink& sink) {
        // The second run, on a tape of its own whose first entries are the inputs: every
        // contribution to an input goes straight to the enclosing tape (backward_into), in
        // the order the plain call would have made it.
        const tape_scope nested;
        std::vector<tree> traced = plain;
        for (const std::size_t i : positions)
            traced[i] = tree(make_variable(nested.get(), plain[i].as_array()));
        const auto [again_leaves, again_def] = flatten((*call)(traced));
        if (again_def != out_def)
            throw_structure("remat (recomputing f for the backward pass)", {},
                            fmt::format("the structure of the first run, {}", out_def.to_string()),
                            again_def.to_string());
        std::vector<std::pair<std::uint32_t, array>> seeds;
        for (std::size_t o = 0; o < out_positions.size(); ++o) {
            const tree& leaf = again_leaves[out_positions[o]];
            if (!cotangents[o] || !leaf.is_array()) continue;
            const auto& slot = leaf.as_array().trace();
            if (!slot) continue; // this result does not depend on the inputs
            if (slot->owner != nested.get())
                throw_sharing("remat (recomputing f for the backward pass)",
                              out_def.leaf_paths()[out_positions[o]],
                              "a result computed from f's arguments",
                              "a value traced by another gradient call");
            seeds.emplace_back(slot->id, *cotangents[o]);
        }
        backward_into(*nested.get(), std::move(seeds), positions.size(), sink);
    };
    std::vector<array> recorded =
        record_multi(t, std::move(outputs), inputs, std::move(backward), op_info{"remat", false});
    for (std::size_t o = 0; o < out_positions.size(); ++o)
        out_leaves[out_positions[o]] = tree(std::move(recorded[o]));
    return unflatten(out_def, std::move(out_leaves));
}

} // namespace paramtree::detail
