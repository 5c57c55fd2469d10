// paramtree — finding positions that hold the same buffer or node, and tying them.
#include <paramtree/alias.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <unordered_map>

namespace paramtree {

namespace {
/// Aliased positions, found in one walk. A position is a (parent, child index) link, named
/// only when it turns out to be aliased: nothing per node is allocated, and memory stays
/// linear in the number of nodes, where keeping every node's full path would grow with depth
/// squared (9 GiB for a 20,000-deep chain).
struct alias_scan {
    struct position {
        std::size_t parent;         // the parent's position; `none` at the root
        const detail::node* holder; // the parent node (null at the root)
        std::size_t index;          // the child's index in it
        const detail::node* n;      // the node itself
    };
    struct group {
        std::size_t first;
        std::vector<std::size_t> others;
    };
    static constexpr std::size_t none = ~std::size_t{0};
    std::vector<position> positions;
    std::vector<group> groups; // in flatten order of their first position

    [[nodiscard]] path path_of(std::size_t pos) const {
        std::vector<std::size_t> chain;
        for (; pos != none; pos = positions[pos].parent)
            chain.push_back(pos);
        std::vector<path_entry> entries;
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
            const position& at = positions[*it];
            if (at.holder == nullptr) continue;
            if (auto e = detail::child_entry(at.holder->meta, at.holder->kind, at.index))
                entries.push_back(std::move(*e));
        }
        return path(std::move(entries));
    }
};

alias_scan scan_aliases(const tree& t) {
    alias_scan out;
    // Leaves by buffer, sorted afterwards (a hash map would allocate a node per leaf); subtree
    // nodes in a map, since a repeated one must be known at once to skip its descendants.
    struct use {
        const void* data;
        std::size_t nbytes, pos;
    };
    std::vector<use> uses;
    std::unordered_map<const detail::node*, std::size_t> nodes; // node -> its group
    std::vector<std::size_t> branch; // the positions of the current node's ancestors
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        branch.resize(at.depth());
        const std::size_t pos = out.positions.size();
        out.positions.push_back(
            {branch.empty() ? alias_scan::none : branch.back(), at.parent(), at.index(), &n});
        if (n.kind == node_kind::leaf) {
            const auto* a = std::get_if<array>(&n.value);
            // An empty array holds no buffer, so two of them never alias (after a load, empty
            // tensors may all point at the same offset of the file).
            if (a != nullptr && a->nbytes() != 0)
                uses.push_back({a->storage_id(), a->nbytes(), pos});
            return detail::visit::skip;
        }
        if (n.kind == node_kind::tied || n.num_leaves == 0) return detail::visit::skip;
        if (n.kind != node_kind::shared) {
            const auto [it, fresh] = nodes.try_emplace(&n, out.groups.size());
            if (!fresh) {
                out.groups[it->second].others.push_back(pos);
                return detail::visit::skip;
            }
            out.groups.push_back({pos, {}});
        }
        branch.push_back(pos);
        return detail::visit::descend;
    });
    // Equal buffers next to each other, each run in flatten order (positions only grow).
    std::stable_sort(uses.begin(), uses.end(), [](const use& a, const use& b) {
        return std::less<>{}(a.data, b.data) || (a.data == b.data && a.nbytes < b.nbytes);
    });
    for (std::size_t i = 0; i < uses.size();) {
        std::size_t j = i + 1;
        while (j < uses.size() && uses[j].data == uses[i].data && uses[j].nbytes == uses[i].nbytes)
            ++j;
        alias_scan::group g{uses[i].pos, {}};
        for (std::size_t k = i + 1; k < j; ++k)
            g.others.push_back(uses[k].pos);
        out.groups.push_back(std::move(g));
        i = j;
    }
    std::erase_if(out.groups, [](const alias_scan::group& g) { return g.others.empty(); });
    std::sort(out.groups.begin(), out.groups.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
}
} // namespace

std::vector<alias_group> find_aliases(const tree& t) {
    const alias_scan scan = scan_aliases(t);
    std::vector<alias_group> out;
    out.reserve(scan.groups.size());
    for (const auto& g : scan.groups) {
        alias_group a{scan.path_of(g.first), {}};
        a.others.reserve(g.others.size());
        for (const auto o : g.others)
            a.others.push_back(scan.path_of(o));
        out.push_back(std::move(a));
    }
    return out;
}

tree share_aliases(const tree& t) {
    const alias_scan scan = scan_aliases(t);
    if (scan.groups.empty()) return t;
    // The paths come from the walk, already canonical and in flatten order: they go to
    // share_impl as they are (share would canonicalise and copy each once more).
    std::vector<path> where;
    std::vector<detail::get_entry> gets;
    for (const auto& g : scan.groups) {
        const path from = scan.path_of(g.first);
        const detail::node& src = *scan.positions[g.first].n;
        const auto* src_array =
            src.kind == node_kind::leaf ? std::get_if<array>(&src.value) : nullptr;
        for (const auto other : g.others) {
            where.push_back(scan.path_of(other));
            std::vector<transform> chain;
            // A reshaped view of the buffer becomes a tie with a reshape.
            if (src_array != nullptr) {
                const auto* view = std::get_if<array>(&scan.positions[other].n->value);
                if (view == nullptr)
                    detail::throw_internal("an array at every position of a buffer's group",
                                           "a leaf of another kind");
                if (view->shape() != src_array->shape())
                    chain.push_back(transform::reshape(view->shape()));
            }
            gets.push_back({from, std::move(chain), nullptr, {}});
        }
    }
    return detail::share_impl(t, std::move(where), std::move(gets));
}

} // namespace paramtree
