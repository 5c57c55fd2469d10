// paramtree — flatten, unflatten, flatten_with_path, flatten_up_to.
// Walks are iterative (explicit stacks) so depth is bounded only by memory.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/flatten.hpp>

#include <fmt/format.h>

namespace paramtree {

namespace {

// Collects leaves in order, without building a structure: the fast path when the root already
// caches its treedef.
void collect_leaves(const detail::node_ptr& root, std::vector<tree>& out) {
    if (root->kind == node_kind::leaf) {
        out.emplace_back(root);
        return;
    }
    // Walks the stored entries: a wide node's chunks are nodes too, and their leaves come in
    // the same order, so no per-child index arithmetic is needed.
    struct frame {
        const detail::node_ptr* next;
        const detail::node_ptr* end;
    };
    auto frame_of = [](const detail::node& n) {
        const auto* raw = n.children.raw_data();
        return frame{raw, raw + n.children.raw_size()};
    };
    std::vector<frame> stack{frame_of(*root)};
    while (!stack.empty()) {
        frame& f = stack.back();
        if (f.next == f.end) {
            stack.pop_back();
            continue;
        }
        const auto& c = *f.next++;
        if (c->kind == node_kind::leaf) {
            out.emplace_back(c);
        } else if (c->num_leaves == 0) {
            continue;
        } else if (f.next == f.end) {
            f = frame_of(*c); // the last child takes over the frame: chains need no stack
        } else {
            stack.push_back(frame_of(*c));
        }
    }
}

// One post-order pass building the structure beside the leaves (optree's FlattenInto, made
// iterative). With `is_leaf`, matching subtrees become leaves; with `paths`, leaf paths too.
template <bool WithPredicate, bool WithPaths>
treedef build(const detail::node_ptr& root, const leaf_predicate* is_leaf,
              std::vector<tree>& leaves, std::vector<path>* paths) {
    std::vector<detail::treedef_node> nodes;
    nodes.reserve(root->num_nodes);
    auto as_leaf = [&](const detail::node_ptr& n) {
        if (n->kind == node_kind::leaf) return true;
        if constexpr (WithPredicate) return (*is_leaf)(tree(n));
        return false;
    };
    [[maybe_unused]] path cur;
    auto emit_leaf = [&](const detail::node_ptr& n) {
        leaves.emplace_back(n);
        nodes.push_back(detail::treedef_node{node_kind::leaf, 0, 1, 1, {}});
        if constexpr (WithPaths) paths->push_back(cur);
    };
    if (as_leaf(root)) {
        emit_leaf(root);
        return detail::make_treedef(std::move(nodes));
    }
    struct frame {
        const detail::node* n;
        std::size_t next, start_nodes, start_leaves;
    };
    std::vector<frame> stack{{root.get(), 0, 0, leaves.size()}};
    while (!stack.empty()) {
        frame& f = stack.back();
        const detail::node* n = f.n;
        if (f.next == n->children.size()) {
            nodes.push_back(detail::treedef_node{n->kind, n->children.size(),
                                                 leaves.size() - f.start_leaves,
                                                 nodes.size() - f.start_nodes + 1, n->meta});
            stack.pop_back();
            if constexpr (WithPaths) {
                if (!stack.empty() && stack.back().n->kind != node_kind::shared) cur.pop_back();
            }
            continue;
        }
        const std::size_t i = f.next++;
        const auto& c = n->children[i];
        if constexpr (WithPaths) {
            if (auto e = detail::child_entry(n->meta, n->kind, i)) cur.push_back(std::move(*e));
        }
        if (as_leaf(c)) {
            emit_leaf(c);
            if constexpr (WithPaths) {
                if (n->kind != node_kind::shared) cur.pop_back();
            }
        } else {
            stack.push_back({c.get(), 0, nodes.size(), leaves.size()});
        }
    }
    return detail::make_treedef(std::move(nodes));
}

} // namespace

flat_tree flatten(const tree& t) {
    const auto& root = t.node();
    flat_tree out;
    out.leaves.reserve(root->num_leaves);
    if (auto cached = root->cached_def.load()) {
        collect_leaves(root, out.leaves);
        out.def = treedef(std::move(cached));
        return out;
    }
    out.def = build<false, false>(root, nullptr, out.leaves, nullptr);
    root->cached_def.store(out.def.impl());
    return out;
}

flat_tree flatten(const tree& t, const leaf_predicate& is_leaf) {
    if (!is_leaf) return flatten(t);
    flat_tree out;
    out.def = build<true, false>(t.node(), &is_leaf, out.leaves, nullptr);
    return out;
}

std::vector<tree> leaves(const tree& t) {
    std::vector<tree> out;
    out.reserve(t.num_leaves());
    collect_leaves(t.node(), out);
    return out;
}

treedef structure(const tree& t) {
    return flatten(t).def;
}

namespace {

template <class Take>
tree unflatten_impl(const treedef& def, std::size_t count, Take&& take) {
    if (count != def.num_leaves())
        detail::throw_leaf_count(fmt::format("unflatten into {}", def.to_string()),
                                 def.num_leaves(), count);
    const auto& nodes = def.nodes();
    std::vector<detail::node_ptr> agenda;
    agenda.reserve(nodes.size());
    // All interior nodes go into one allocation; every node but the root is someone's child.
    detail::slab_builder slab(nodes.size() - def.num_leaves(), nodes.size() - 1);
    std::size_t next_leaf = 0;
    bool plain_leaves = true; // the result's structure is `def` only if every leaf is a leaf
    for (const auto& n : nodes) {
        if (n.kind == node_kind::leaf) {
            detail::node_ptr leaf = take(next_leaf++);
            plain_leaves = plain_leaves && leaf->kind == node_kind::leaf;
            agenda.push_back(std::move(leaf));
            continue;
        }
        const std::size_t first = agenda.size() - n.arity;
        detail::node_ptr made = slab.make(n.kind, agenda.data() + first, n.arity, n.meta);
        agenda.resize(first);
        agenda.push_back(std::move(made));
    }
    detail::node_ptr root = std::move(agenda.back());
    if (plain_leaves && root->kind != node_kind::none) root->cached_def.store(def.impl());
    return tree(std::move(root));
}

} // namespace

tree unflatten(const treedef& def, std::span<const tree> leaves) {
    return unflatten_impl(def, leaves.size(), [&](std::size_t i) { return leaves[i].node(); });
}

tree unflatten(const treedef& def, std::vector<tree>&& leaves) {
    return unflatten_impl(def, leaves.size(),
                          [&](std::size_t i) { return std::move(leaves[i]).take_node(); });
}

flat_tree_with_path flatten_with_path(const tree& t, const leaf_predicate& is_leaf) {
    std::vector<tree> leaves;
    std::vector<path> paths;
    treedef def = is_leaf ? build<true, true>(t.node(), &is_leaf, leaves, &paths)
                          : build<false, true>(t.node(), nullptr, leaves, &paths);
    flat_tree_with_path out{{}, std::move(def)};
    out.leaves.reserve(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i)
        out.leaves.emplace_back(std::move(paths[i]), std::move(leaves[i]));
    return out;
}

flat_tree_with_path flatten_with_path(const tree& t) {
    return flatten_with_path(t, nullptr);
}

std::vector<tree> flatten_up_to(const treedef& prefix, const tree& t) {
    std::vector<tree> out;
    out.reserve(prefix.num_leaves());
    const auto& nodes = prefix.nodes();
    // kids[d]: the prefix positions of the children of the node passed at depth d. The path is
    // built only for an error.
    std::vector<std::vector<std::size_t>> kids;
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        const std::size_t depth = at.depth();
        const std::size_t index = depth == 0 ? nodes.size() - 1 : kids[depth - 1][at.index()];
        kids.resize(depth);
        const auto& d = nodes[index];
        if (d.kind == node_kind::leaf) {
            out.emplace_back(detail::node_ptr::share(&n));
            return detail::visit::skip;
        }
        if (!detail::same_level(n, d))
            detail::throw_structure("flatten_up_to", at.current_path(),
                                    detail::describe_node(d.kind, d.arity, d.meta) +
                                        " (the prefix)",
                                    detail::describe(n));
        kids.push_back(detail::child_positions(nodes, index));
        return detail::visit::descend;
    });
    return out;
}

} // namespace paramtree
