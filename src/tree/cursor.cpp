// paramtree — resolving paths in trees (see <paramtree/detail/cursor.hpp>).
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>

#include <set>
#include <utility>

#include <fmt/format.h>

namespace paramtree::detail {

const node* skip_shared(const node* n) noexcept {
    while (n->kind == node_kind::shared)
        n = n->children[0].get();
    return n;
}

location try_locate(const node& root, const path& p, bool leaf_offsets) noexcept {
    location at;
    const node* cur = &root;
    for (; at.depth < p.size(); ++at.depth) {
        // A scope is looked through on the way down; a target that is a Shared node is
        // returned as itself.
        while (cur->kind == node_kind::shared) {
            at.scope_owner = cur;
            cur = cur->children[0].get();
            at.scope = cur;
            at.scope_depth = at.depth;
        }
        at.last = cur;
        const auto i = find_child(*cur, p[at.depth]);
        if (!i) return at; // target stays null
        if (leaf_offsets)
            for (std::size_t j = 0; j < *i; ++j)
                at.leaf_offset += cur->children[j]->num_leaves;
        cur = cur->children[*i].get();
    }
    at.target = at.last = cur;
    return at;
}

location locate(const node& root, const path& p, std::string_view context, bool leaf_offsets) {
    location at = try_locate(root, p, leaf_offsets);
    if (!at.target)
        throw_path(std::string(context), p.prefix(at.depth),
                   fmt::format("a node with child {}", entry_str(p[at.depth])), describe(*at.last));
    return at;
}

path through_ties(const node& root, path p, std::vector<transform>& chain,
                  std::string_view context) {
    // A tie redirects the rest of the walk; meeting the same tie with the same remaining path
    // twice means the redirections go round.
    std::set<std::pair<const node*, path>> seen;
    for (;;) {
        // A tie has no children: the walk stops at it (`last`), mid-path or at the end.
        const location at = try_locate(root, p);
        const node* cur = at.last;
        if (cur->kind != node_kind::tied) return p; // a missing entry: the caller reports it
        const std::size_t k = at.depth;
        const auto& m = meta_of<tie_meta>(cur->meta);
        if (m.fn)
            throw_sharing(std::string(context), p.prefix(k), "a tie to a named source",
                          "a tie through the callable " + m.fn_name + "() (untie it first)");
        path rest;
        for (std::size_t r = k; r < p.size(); ++r)
            rest.push_back(p[r]);
        if (!seen.emplace(cur, rest).second)
            throw_sharing(std::string(context), p, "a tie chain that ends", "a cycle of ties");
        chain.insert(chain.begin(), m.transforms.begin(), m.transforms.end());
        p = p.prefix(at.scope_depth) / m.source / rest;
    }
}

} // namespace paramtree::detail
