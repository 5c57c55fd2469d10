// paramtree — selectors and path-copying tree_at.
#include <paramtree/at.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

namespace paramtree {

selector selector::operator[](std::size_t i) const {
    return (*this)[paramtree::path{index_key{i}}];
}

selector selector::operator[](std::string_view name) const {
    return (*this)[paramtree::path{detail::name_entry(*node_.node(), name)}];
}

selector selector::operator[](const paramtree::path& p) const {
    try {
        return selector(node_.at(p), path_ / p);
    } catch (const path_error& e) {
        // Re-raise with the full path from the root, not the one from this node (tree::at
        // raises for a place in the tree: the path object is there, no text to parse).
        detail::throw_path("selector", path_ / e.where().value_or(paramtree::path{}), e.expected(),
                           e.found());
    }
}

namespace detail {

std::vector<path> canonical_paths(const tree& t, std::vector<path> paths) {
    for (auto& p : paths)
        p = canonical_path(*t.node(), p);
    return paths;
}

namespace {
/// The positions of `paths` in sorted order: a selection's descendants follow it.
std::vector<std::size_t> sorted_order(const std::vector<path>& paths) {
    std::vector<std::size_t> order(paths.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return paths[a] < paths[b]; });
    return order;
}

/// Every path exists in `t` and no selection contains another (tree_at replaces disjoint
/// subtrees); path_error naming the first offending path otherwise. `order` is sorted_order.
void check_selections(const tree& t, const std::vector<path>& paths,
                      const std::vector<std::size_t>& order) {
    for (const auto& p : paths) {
        if (!t.contains(p)) (void)t.at(p); // throws a path_error naming the failing step
    }
    for (std::size_t i = 1; i < order.size(); ++i) {
        const path& before = paths[order[i - 1]];
        const path& after = paths[order[i]];
        if (before.is_prefix_of(after))
            throw_path("tree_at", before, "disjoint selections",
                       before == after ? std::string("the same node selected twice")
                                       : fmt::format("a node that also contains the selection {}",
                                                     display_path(keystr(after))));
    }
}
} // namespace

tree tree_at_paths(const tree& t, std::span<const path> requested,
                   const std::function<tree(std::size_t, const tree&)>& replace_at,
                   bool follow_ties) {
    std::vector<path> paths(requested.begin(), requested.end());
    std::vector<std::vector<transform>> chains(paths.size());
    if (follow_ties && (t.node()->flags & has_tied) != 0)
        for (std::size_t k = 0; k < paths.size(); ++k)
            // A path that reaches a tied position (or goes through one) is redirected to the
            // tie's source, so an edit through the expanded view changes the one shared value;
            // the chain's transforms are inverted on the way back.
            paths[k] = through_ties(*t.node(), std::move(paths[k]), chains[k], "tree_at");
    const std::function<tree(std::size_t, const tree&)> replace = [&](std::size_t k,
                                                                      const tree& old) -> tree {
        if (chains[k].empty()) return replace_at(k, old);
        return invert_chain(replace_at(k, apply_chain(old, chains[k])), chains[k], old);
    };
    const std::vector<std::size_t> order = sorted_order(paths);
    check_selections(t, paths, order);
    return rebuild_at_sorted(t, paths, order, replace);
}

tree rebuild_at_sorted(const tree& t, std::span<const path> paths,
                       std::span<const std::size_t> order,
                       const std::function<tree(std::size_t, const tree&)>& replace) {
    // One pass over the union of the paths: each touched node is copied once, whatever the
    // number of selections below it (k edits in one wide node cost O(width + k), not O(k*width)).
    if (order.empty()) return t;
    bool structure_kept = true; // leaf replaced by leaf everywhere: the treedef is unchanged
    struct frame {
        node_ptr n;
        std::size_t lo, hi, depth; // the selections [lo, hi) of `order` all pass through n
        std::vector<std::pair<std::size_t, node_ptr>> changes;
        std::size_t next; // next selection to route to a child
        std::size_t slot; // the child being rebuilt
    };
    std::vector<frame> stack;
    node_ptr root;
    // Starts rebuilding `n` for selections [lo, hi): replaces it at once if a selection ends
    // here, else pushes a frame. Returns the finished node, or null if a frame was pushed.
    auto start = [&](const node_ptr& n, std::size_t lo, std::size_t hi,
                     std::size_t depth) -> node_ptr {
        const std::size_t k = order[lo];
        if (hi - lo == 1 && paths[k].size() == depth) {
            node_ptr out = replace(k, tree(n)).node();
            structure_kept =
                structure_kept && n->kind == node_kind::leaf && out->kind == node_kind::leaf;
            return out;
        }
        stack.push_back({n, lo, hi, depth, {}, lo, 0});
        return {};
    };
    root = start(t.node(), 0, order.size(), 0);
    while (!stack.empty()) {
        const std::size_t top = stack.size() - 1;
        frame& f = stack[top];
        if (f.next < f.hi) {
            std::size_t lo = f.next, hi = f.next + 1, depth = f.depth, child = 0;
            if (f.n->kind == node_kind::shared) {
                hi = f.hi; // paths pass through a Shared node without an entry
            } else {
                const auto& e = paths[order[lo]][f.depth];
                while (hi < f.hi && paths[order[hi]][f.depth] == e)
                    ++hi;
                child = *find_child(*f.n, e);
                depth = f.depth + 1;
            }
            f.next = hi;
            f.slot = child;
            const node_ptr c = f.n->children[child];
            if (node_ptr done = start(c, lo, hi, depth))
                stack[top].changes.emplace_back(child, std::move(done));
            continue;
        }
        node_ptr built = replace_children(*f.n, std::move(f.changes));
        stack.pop_back();
        if (stack.empty())
            root = std::move(built);
        else
            stack.back().changes.emplace_back(stack.back().slot, std::move(built));
    }
    if (structure_kept && root.get() != t.node().get()) {
        if (auto def = t.node()->cached_def.load()) root->cached_def.store(std::move(def));
    }
    return tree(std::move(root));
}

} // namespace detail
} // namespace paramtree
