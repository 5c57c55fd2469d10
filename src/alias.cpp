// paramtree — finding positions that hold the same buffer or node, and tying them.
#include <paramtree/alias.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/shared.hpp>

#include <optional>
#include <unordered_map>

namespace paramtree {

namespace {
struct buffer_key {
    const void* data;
    std::size_t nbytes;
    bool operator==(const buffer_key&) const = default;
};
struct buffer_hash {
    std::size_t operator()(const buffer_key& k) const noexcept {
        return std::hash<const void*>{}(k.data) ^ (k.nbytes * 0x9e3779b97f4a7c15ULL);
    }
};
} // namespace

std::vector<alias_group> find_aliases(const tree& t) {
    // Positions are recorded as (parent, entry) links and turned into paths only for groups
    // that turn out to have aliases: memory stays linear in the number of nodes, where keeping
    // every node's full path would grow with depth squared (9 GiB for a 20,000-deep chain).
    struct position {
        std::size_t parent;
        std::optional<path_entry> entry;
    };
    constexpr std::size_t no_parent = ~std::size_t{0};
    std::vector<position> positions;
    auto path_of = [&](std::size_t pos) {
        std::vector<const path_entry*> entries;
        for (; pos != no_parent; pos = positions[pos].parent)
            if (positions[pos].entry) entries.push_back(&*positions[pos].entry);
        path p;
        for (auto it = entries.rbegin(); it != entries.rend(); ++it)
            p.push_back(**it);
        return p;
    };

    struct group {
        std::size_t first;
        std::vector<std::size_t> others;
    };
    std::vector<group> groups;
    std::unordered_map<buffer_key, std::size_t, buffer_hash> buffers;
    std::unordered_map<const detail::node*, std::size_t> nodes;
    auto note = [&](auto& index, const auto& key, std::size_t pos) {
        const auto [it, fresh] = index.try_emplace(key, groups.size());
        if (fresh)
            groups.push_back({pos, {}});
        else
            groups[it->second].others.push_back(pos);
        return fresh;
    };
    std::vector<std::size_t> branch; // the positions of the current node's ancestors
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        branch.resize(at.depth());
        const std::size_t pos = positions.size();
        positions.push_back({branch.empty() ? no_parent : branch.back(), at.entry()});
        if (n.kind == node_kind::leaf) {
            const auto* a = std::get_if<array>(&n.value);
            // An empty array holds no buffer, so two of them never alias (after a load, empty
            // tensors may all point at the same offset of the file).
            if (a != nullptr && a->nbytes() != 0)
                note(buffers, buffer_key{a->storage_id(), a->nbytes()}, pos);
            return detail::visit::skip;
        }
        if (n.kind == node_kind::tied || n.num_leaves == 0) return detail::visit::skip;
        if (n.kind != node_kind::shared && !note(nodes, &n, pos)) return detail::visit::skip;
        branch.push_back(pos);
        return detail::visit::descend;
    });
    std::vector<alias_group> out;
    for (const auto& g : groups) {
        if (g.others.empty()) continue;
        alias_group a{path_of(g.first), {}};
        for (const auto o : g.others)
            a.others.push_back(path_of(o));
        out.push_back(std::move(a));
    }
    return out;
}

tree share_aliases(const tree& t) {
    const auto groups = find_aliases(t);
    if (groups.empty()) return t;
    std::vector<path> where;
    std::vector<source> gets;
    for (const auto& g : groups) {
        const tree src = t.at(g.source);
        for (const auto& other : g.others) {
            where.push_back(other);
            std::vector<transform> chain;
            if (src.is_array()) {
                const auto& shape = t.at(other).as_array().shape();
                if (shape != src.as_array().shape()) chain.push_back(transform::reshape(shape));
            }
            gets.emplace_back(g.source, std::move(chain));
        }
    }
    return share(t, where, gets);
}

} // namespace paramtree
