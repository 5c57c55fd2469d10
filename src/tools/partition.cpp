// paramtree — partition / combine / filter.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/map.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/detail/walk.hpp>

#include <unordered_map>

#include <fmt/format.h>

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

namespace {
// Sends leaf i to `matching` when decision[i], else to `rest`; the other side gets None.
partitioned split(const treedef& def, std::vector<tree> leaves, const std::vector<char>& decision) {
    std::vector<tree> yes(leaves.size()), no(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i)
        (decision[i] != 0 ? yes : no)[i] = std::move(leaves[i]);
    return {unflatten(def, std::move(yes)), unflatten(def, std::move(no))};
}
} // namespace

partitioned partition(const tree& t, const path_filter& pred, tie_policy policy) {
    auto [items, def] = flatten_with_path(t);
    std::vector<char> decision(items.size());
    for (std::size_t i = 0; i < items.size(); ++i)
        decision[i] = pred(items[i].first, items[i].second);
    if ((t.node()->flags & detail::has_tied) != 0) {
        // Ask the predicate at every tied position too; the policy settles disagreements.
        std::unordered_map<std::string, std::size_t> index;
        for (std::size_t i = 0; i < items.size(); ++i)
            index.emplace(keystr(items[i].first), i);
        for (const auto& info : ties(t)) {
            if (!info.getter.empty()) continue;
            // The source as stored (its own placeholders leafless), so its leaves are t's.
            const tree stored(detail::node_ptr::share(
                detail::locate(*t.node(), info.source, "partition").target));
            auto [sub, sub_def] = flatten_with_path(stored);
            for (auto& [rel, leaf] : sub) {
                const std::size_t i = index.at(keystr(info.source / rel));
                const bool own = pred(items[i].first, items[i].second);
                const bool tied = pred(info.tied / rel, leaf);
                switch (policy) {
                case tie_policy::error:
                    if (own != tied)
                        detail::throw_sharing("partition would split a tie group", info.tied / rel,
                                              fmt::format("the same answer as its source {} ({})",
                                                          display_path(keystr(items[i].first)),
                                                          own ? "selected" : "not selected"),
                                              std::string(tied ? "selected" : "not selected") +
                                                  " (pass a tie_policy to decide)");
                    break;
                case tie_policy::source:
                    break;
                case tie_policy::any:
                    decision[i] = decision[i] || tied;
                    break;
                case tie_policy::all:
                    decision[i] = decision[i] && tied;
                    break;
                }
            }
        }
    }
    std::vector<tree> leaves;
    leaves.reserve(items.size());
    for (auto& item : items)
        leaves.push_back(std::move(item.second));
    return split(def, std::move(leaves), decision);
}

partitioned partition(const tree& t, const leaf_filter& pred) {
    auto [leaves, def] = flatten(t);
    std::vector<char> decision(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i)
        decision[i] = pred(leaves[i]);
    return split(def, std::move(leaves), decision);
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
