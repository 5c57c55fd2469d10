// paramtree — finding positions that hold the same buffer or node, and tying them.
#include <paramtree/alias.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/shared.hpp>

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
    std::vector<alias_group> groups;
    std::unordered_map<buffer_key, std::size_t, buffer_hash> buffers;
    std::unordered_map<const detail::node*, std::size_t> nodes;
    struct item {
        detail::node_ptr n;
        path at;
    };
    std::vector<item> stack{{t.node(), {}}};
    while (!stack.empty()) {
        item it = std::move(stack.back());
        stack.pop_back();
        const auto& n = *it.n;
        if (n.kind == node_kind::leaf) {
            const auto* a = std::get_if<array>(&n.value);
            if (a == nullptr) continue;
            const auto [pos, fresh] =
                buffers.try_emplace(buffer_key{a->storage_id(), a->nbytes()}, groups.size());
            if (fresh)
                groups.push_back({std::move(it.at), {}});
            else
                groups[pos->second].others.push_back(std::move(it.at));
            continue;
        }
        if (n.kind == node_kind::tied || n.num_leaves == 0) continue;
        if (n.kind != node_kind::shared) {
            const auto [pos, fresh] = nodes.try_emplace(&n, groups.size());
            if (!fresh) {
                groups[pos->second].others.push_back(std::move(it.at));
                continue;
            }
            groups.push_back({it.at, {}});
        }
        for (std::size_t k = n.children.size(); k-- > 0;) {
            const auto e = detail::child_entry(n.meta, n.kind, k);
            stack.push_back({n.children[k], e ? it.at / *e : it.at});
        }
    }
    std::erase_if(groups, [](const alias_group& g) { return g.others.empty(); });
    return groups;
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
