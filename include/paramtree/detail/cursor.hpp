// paramtree — internal: resolving a path in a tree. One walk serves every lookup — tree::at
// and contains, canonical paths, share and untie, tree_at through ties, contract's sources:
// Shared scopes are transparent (their child is where the path continues), and the walk
// reports the innermost scope it passed, where a tie's relative source starts. Ties are
// followed only on request (`through_ties`), with a set of the ties visited so that a cycle
// is an error, not a loop. And visiting nodes in order: `preorder` over one tree, `preorder2`
// over two side by side, each with an explicit stack (no recursion, however deep) and the
// key path of the current node built only when the visitor asks for it.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include <paramtree/detail/node.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/path.hpp>
#include <paramtree/transform.hpp>

namespace paramtree::detail {

/// Where a path led.
struct location {
    /// The node at the path (a Shared node there is returned as itself), or null where it
    /// does not exist.
    const node* target = nullptr;
    /// Path entries resolved: the path's length when found, else where the walk stopped.
    std::size_t depth = 0;
    /// The last node reached: the target, or the node that lacks entry `depth`.
    const node* last = nullptr;
    /// The child of the innermost Shared node passed (a tie's source is relative to it), and
    /// the length of the path prefix at which it starts; null and 0 outside any scope.
    const node* scope = nullptr;
    std::size_t scope_depth = 0;
    /// The innermost Shared node passed itself (its metadata holds the scope's tags).
    const node* scope_owner = nullptr;
    /// With `leaf_offsets`: the index of the target's first leaf among the root's (pruned)
    /// leaves, as flatten numbers them.
    std::size_t leaf_offset = 0;
};

/// `n`, or the first node below it that is not a Shared node (a scope's content).
[[nodiscard]] const node* skip_shared(const node* n) noexcept;

/// Walks `p` from `root`; never throws. `leaf_offsets` also counts the leaves before the
/// target (a sum over earlier siblings at each step: only contract's plan asks for it).
[[nodiscard]] location try_locate(const node& root, const path& p,
                                  bool leaf_offsets = false) noexcept;

/// `try_locate`, but a path that does not exist is a path_error from `context` naming the
/// deepest prefix that does and what it lacks.
[[nodiscard]] location locate(const node& root, const path& p, std::string_view context,
                              bool leaf_offsets = false);

/// `p` with every tie on the way replaced by its source (a tie's source path starts at its
/// scope), and the ties' transforms prepended to `chain` in the order they apply. Returns the
/// path to the tied-to node; a missing entry stops the walk (the caller's existence check
/// names it). A tie through a callable, or a cycle of ties, is a sharing_error from `context`.
[[nodiscard]] path through_ties(const node& root, path p, std::vector<transform>& chain,
                                std::string_view context);

/// What a `preorder` visitor tells the walk after seeing a node.
enum class visit {
    descend, ///< go into its children (in order) next
    skip,    ///< leave its children out
    stop     ///< end the walk
};

/// What the pre-order walk reads of what it walks: a tree's nodes, or a treedef's post-order
/// node list. `open` makes a level's frame (a treedef's frame lists the child positions once,
/// so each step is O(1)); `child`, `arity` and `entry` read it.
struct node_source {
    using handle = const node*;
    using value = node;
    struct frame {
        const node* n;
    };
    [[nodiscard]] frame open(handle h) const noexcept { return {h}; }
    [[nodiscard]] static std::size_t arity(const frame& f) noexcept { return f.n->children.size(); }
    [[nodiscard]] static handle child(const frame& f, std::size_t k) noexcept {
        return f.n->children[k].get();
    }
    [[nodiscard]] static const node& at(const frame& f) noexcept { return *f.n; }
    [[nodiscard]] const node& at(handle h) const noexcept { return *h; }
    [[nodiscard]] bool has_children(handle h) const noexcept { return !h->children.empty(); }
};
struct def_source {
    struct handle {
        const std::vector<treedef_node>* nodes;
        std::size_t index; // a position in the post-order list
    };
    using value = treedef_node;
    struct frame {
        const std::vector<treedef_node>* nodes;
        std::size_t index;
        std::vector<std::size_t> kids;
    };
    [[nodiscard]] frame open(handle h) const {
        return {h.nodes, h.index, child_positions(*h.nodes, h.index)};
    }
    [[nodiscard]] static std::size_t arity(const frame& f) noexcept { return f.kids.size(); }
    [[nodiscard]] static handle child(const frame& f, std::size_t k) noexcept {
        return {f.nodes, f.kids[k]};
    }
    [[nodiscard]] static const treedef_node& at(const frame& f) noexcept {
        return (*f.nodes)[f.index];
    }
    [[nodiscard]] const treedef_node& at(handle h) const noexcept { return (*h.nodes)[h.index]; }
    [[nodiscard]] bool has_children(handle h) const noexcept {
        return (*h.nodes)[h.index].arity != 0;
    }
};

/// Where a preorder walk is: the levels above the current node, each a node (or pair) and the
/// index of the child the walk took there. The key path is built from them only when asked.
template <class Source, std::size_t Width>
class basic_walk_position {
public:
    using value = typename Source::value;
    struct level {
        typename Source::frame f[Width];
        std::size_t next = 0; // one past the child being visited
    };
    /// The current node's depth below the root (0 at the root).
    [[nodiscard]] std::size_t depth() const noexcept { return levels_.size(); }
    /// The key path of the current node (of the first tree's node, for preorder2): one entry
    /// per level, none for a Shared node's child. Built on each call.
    [[nodiscard]] path current_path() const {
        std::vector<path_entry> entries;
        entries.reserve(levels_.size());
        for (const level& l : levels_) {
            const value& n = Source::at(l.f[0]);
            if (auto e = child_entry(n.meta, n.kind, l.next - 1)) entries.push_back(std::move(*e));
        }
        return path(std::move(entries));
    }
    /// The current node's parent (null at the root) and its position among the parent's
    /// children (0 at the root): enough to name the entry later, with `child_entry`.
    [[nodiscard]] const value* parent() const noexcept {
        return levels_.empty() ? nullptr : &Source::at(levels_.back().f[0]);
    }
    [[nodiscard]] std::size_t index() const noexcept {
        return levels_.empty() ? 0 : levels_.back().next - 1;
    }
    /// The length of the key path to the current node's scope — the innermost Shared node
    /// strictly above it (of the first tree), which a placeholder at or below it is read from
    /// — or 0 outside every Shared node: a tie's source, relative to its scope, is
    /// `current_path().prefix(scope_path_size()) / source`. Found from the levels the walk
    /// keeps anyway: every level above the scope adds an entry but the Shared ones.
    [[nodiscard]] std::size_t scope_path_size() const noexcept {
        std::size_t i = levels_.size();
        while (i > 0 && Source::at(levels_[i - 1].f[0]).kind != node_kind::shared)
            --i;
        if (i == 0) return 0;
        std::size_t entries = 0;
        for (std::size_t j = 0; j + 1 < i; ++j)
            entries += Source::at(levels_[j].f[0]).kind == node_kind::shared ? 0 : 1;
        return entries;
    }
    /// The current node's entry in its parent's children (none at the root and for a Shared
    /// node's child).
    [[nodiscard]] std::optional<path_entry> entry() const {
        if (levels_.empty()) return std::nullopt;
        const value& n = Source::at(levels_.back().f[0]);
        return child_entry(n.meta, n.kind, levels_.back().next - 1);
    }

private:
    template <class S, std::size_t W, class F>
    friend void walk_preorder(const S& source, const typename S::handle (&roots)[W], F& visitor);
    std::vector<level> levels_;
};
template <std::size_t Width>
using walk_position = basic_walk_position<node_source, Width>;
template <std::size_t Width>
using def_position = basic_walk_position<def_source, Width>;

/// The walk behind `preorder` and `preorder2`: `Width` trees (or treedefs) in step; children
/// are paired by index, so a visitor descends into a pair only when both have the same arity.
template <class Source, std::size_t Width, class F>
void walk_preorder(const Source& source, const typename Source::handle (&roots)[Width],
                   F& visitor) {
    using handle = typename Source::handle;
    basic_walk_position<Source, Width> at;
    const auto call = [&](const handle(&hs)[Width]) {
        if constexpr (Width == 1)
            return visitor(source.at(hs[0]), at);
        else
            return visitor(source.at(hs[0]), source.at(hs[1]), at);
    };
    auto enter = [&](const handle(&hs)[Width]) {
        typename basic_walk_position<Source, Width>::level l{};
        for (std::size_t i = 0; i < Width; ++i)
            l.f[i] = source.open(hs[i]);
        at.levels_.push_back(std::move(l));
    };
    const visit first = call(roots);
    if (first != visit::descend || !source.has_children(roots[0])) return;
    enter(roots);
    while (!at.levels_.empty()) {
        auto& top = at.levels_.back();
        if (top.next == Source::arity(top.f[0])) {
            at.levels_.pop_back();
            continue;
        }
        const std::size_t k = top.next++;
        handle kids[Width];
        for (std::size_t i = 0; i < Width; ++i)
            kids[i] = Source::child(top.f[i], k);
        const visit v = call(kids);
        if (v == visit::stop) return;
        if (v == visit::descend && source.has_children(kids[0])) enter(kids);
    }
}

/// Visits `root` and, where the visitor says `visit::descend`, its descendants, in pre-order
/// (children in order): `visitor(const node&, const walk_position<1>&) -> visit`.
template <class F>
void preorder(const node& root, F&& visitor) {
    const node_source::handle roots[1] = {&root};
    walk_preorder(node_source{}, roots, visitor);
}

/// `preorder` over two trees side by side: `visitor(const node& a, const node& b,
/// const walk_position<2>&) -> visit`. It must return `descend` only for two nodes of the
/// same arity (their children are visited pair by pair).
template <class F>
void preorder2(const node& a, const node& b, F&& visitor) {
    const node_source::handle roots[2] = {&a, &b};
    walk_preorder(node_source{}, roots, visitor);
}

/// The same walks over treedefs (their post-order node lists): `visitor(const treedef_node&,
/// const def_position<1>&) -> visit`, and `(a, b, const def_position<2>&)` side by side.
template <class F>
void preorder(const std::vector<treedef_node>& def, F&& visitor) {
    if (def.empty()) return;
    const def_source::handle roots[1] = {{&def, def.size() - 1}};
    walk_preorder(def_source{}, roots, visitor);
}
template <class F>
void preorder2(const std::vector<treedef_node>& a, const std::vector<treedef_node>& b,
               F&& visitor) {
    if (a.empty() || b.empty()) return;
    const def_source::handle roots[2] = {{&a, a.size() - 1}, {&b, b.size() - 1}};
    walk_preorder(def_source{}, roots, visitor);
}

} // namespace paramtree::detail
