// paramtree — partition / combine / filter.
#include <paramtree/detail/errors.hpp>
#include <paramtree/map.hpp>
#include <paramtree/partition.hpp>

namespace paramtree {

bool is_array(const tree& leaf) {
    return leaf.is_array();
}

bool is_float_array(const tree& leaf) {
    return leaf.is_array() && is_inexact(leaf.as_array().dtype());
}

bool is_inexact(const tree& leaf) {
    return is_float_array(leaf) || (leaf.is_leaf() && std::holds_alternative<double>(leaf.value()));
}

partitioned partition(const tree& t, const path_filter& pred) {
    auto [items, def] = flatten_with_path(t);
    std::vector<tree> yes, no;
    yes.reserve(items.size());
    no.reserve(items.size());
    for (auto& [p, leaf] : items) {
        if (pred(p, leaf)) {
            yes.push_back(std::move(leaf));
            no.emplace_back();
        } else {
            yes.emplace_back();
            no.push_back(std::move(leaf));
        }
    }
    return {unflatten(def, std::move(yes)), unflatten(def, std::move(no))};
}

partitioned partition(const tree& t, const leaf_filter& pred) {
    auto [leaves, def] = flatten(t);
    std::vector<tree> yes, no;
    yes.reserve(leaves.size());
    no.reserve(leaves.size());
    for (auto& leaf : leaves) {
        if (pred(leaf)) {
            yes.push_back(std::move(leaf));
            no.emplace_back();
        } else {
            yes.emplace_back();
            no.push_back(std::move(leaf));
        }
    }
    return {unflatten(def, std::move(yes)), unflatten(def, std::move(no))};
}

tree filter(const tree& t, const leaf_filter& pred, const tree& replacement) {
    return tree_map([&](const tree& leaf) { return pred(leaf) ? leaf : replacement; }, t);
}

tree combine(std::span<const tree> parts) {
    if (parts.empty()) return tree{};
    // None holes are leaves here, so parts with holes in different places line up.
    const map_options none_is_leaf{[](const tree& n) { return n.is_none(); }};
    std::vector<const tree*> ptrs;
    for (const auto& p : parts)
        ptrs.push_back(&p);
    auto in = detail::flatten_all("combine", ptrs, none_is_leaf.is_leaf, false);
    std::vector<tree> out;
    out.reserve(in.leaves[0].size());
    for (std::size_t i = 0; i < in.leaves[0].size(); ++i) {
        tree chosen;
        for (const auto& part : in.leaves) {
            if (!part[i].is_none()) {
                chosen = part[i];
                break;
            }
        }
        out.push_back(std::move(chosen));
    }
    return unflatten(in.def, std::move(out));
}

} // namespace paramtree
