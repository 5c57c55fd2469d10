// paramtree — Shared nodes: construction with validation, expand, contract, untie, ties.
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/shared.hpp>

#include "compute/kernels.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <span>
#include <unordered_map>

#include <fmt/format.h>

namespace paramtree {

namespace detail {

// Checks that `value` (what the get produces) can stand where `target` stands: the same
// structure and, leaf by leaf, the same dtype and shape after the transforms. Computes shapes
// only: nothing is copied, whatever the array size.
void check_fits(std::string_view context, const path& where, const tree& target, const tree& value,
                const std::vector<transform>& chain, const std::function<std::string()>& what) {
    // A leaf tied to a leaf (share_aliases' every tie, most ties in models): compared as they
    // are, without flattening either into a treedef.
    if (target.is_array() && value.is_array()) {
        const auto& ta = target.as_array();
        const auto& va = value.as_array();
        if (ta.dtype() == va.dtype() &&
            ta.shape() == (chain.empty() ? va.shape() : chain_shapes(va.shape(), chain).back()))
            return;
    }
    // Not structured bindings: clang 14 does not let the lambda below capture one.
    const flat_tree target_flat = flatten(target), value_flat = flatten(value);
    const std::vector<tree>& tl = target_flat.leaves;
    const std::vector<tree>& vl = value_flat.leaves;
    const treedef& td = target_flat.def;
    const treedef& vd = value_flat.def;
    if (!(td == vd)) {
        const auto d = first_difference(td, vd);
        throw_sharing(std::string(context), where / (d ? d->where : path{}),
                      (d ? d->left : td.to_string()) + " (the node being tied)",
                      fmt::format("{} from get {}", d ? d->right : vd.to_string(), what()));
    }
    // The leaf's path only for an error (every tie of a model passes through here).
    const auto at = [&](std::size_t i) { return where / td.leaf_paths()[i]; };
    for (std::size_t i = 0; i < tl.size(); ++i) {
        if (!tl[i].is_array() && !vl[i].is_array()) continue;
        if (tl[i].is_array() != vl[i].is_array())
            throw_sharing(std::string(context), at(i), describe(tl[i]) + " (the node being tied)",
                          fmt::format("{} from get {}", describe(vl[i]), what()));
        const auto& ta = tl[i].as_array();
        const auto& va = vl[i].as_array();
        const shape_type shape = chain_shapes(va.shape(), chain).back();
        if (ta.dtype() != va.dtype() || ta.shape() != shape)
            throw_sharing(std::string(context), at(i), ta.describe() + " (the node being tied)",
                          fmt::format("{} from get {}", describe(va.dtype(), shape), what()));
    }
}

namespace {

// A tie stands for parameters: its source holds an array (or a tie, which does). A tie of a
// string, of None or of a subtree without arrays has nothing to train, and a file that declares
// one is malformed.
void check_array_source(std::string_view context, const path& p, const node& source) {
    bool found = false;
    preorder(source, [&](const node& n, const walk_position<1>&) {
        found = n.kind == node_kind::tied ||
                (n.kind == node_kind::leaf && std::holds_alternative<array>(n.value));
        return found ? visit::stop : visit::descend;
    });
    if (!found)
        throw_sharing(std::string(context), p, "a source that holds an array", describe(source));
}

// What a callable get returned, read from a pruned tree: a value, without ties in it.
void check_callable_value(std::string_view context, const path& where, const get_entry& g,
                          const tree& value) {
    if ((value.node()->flags & (has_tied | has_shared)) != 0)
        throw_sharing(std::string(context), where,
                      fmt::format("a callable get {}() that returns a value", g.fn_name),
                      "a tie placeholder or Shared node (it read a tied position of the "
                      "pruned tree)");
}

std::string get_text(const get_entry& g) {
    if (g.fn) return fmt::format("{}()", g.fn_name);
    return fmt::format("{}{}", display_path(keystr(g.from)), to_string(g.transforms));
}

// Where nodes must be disjoint, and no where node may contain a get node (the source would be
// pruned away). A where node inside a get node is a source that holds a tie itself: legal
// unless the ties read each other round, which `fill_order` finds once the tree is pruned
// (`nested` says whether it has to look). Sorting makes every prefix relation show up on a
// stack of open prefixes: O(n log n). Returns the where nodes' indices in sorted path order
// (what rebuild_at_sorted takes).
struct disjoint_where {
    std::vector<std::size_t> order;
    bool nested = false; // a where node lies inside a get node
};
disjoint_where check_disjoint(const std::vector<path>& where, const std::vector<get_entry>& gets) {
    struct entry {
        const path* p;
        bool is_where;
        std::size_t index;
    };
    std::vector<entry> all;
    all.reserve(where.size() + gets.size());
    for (std::size_t i = 0; i < where.size(); ++i)
        all.push_back({&where[i], true, i});
    for (const auto& g : gets)
        if (!g.fn) all.push_back({&g.from, false, 0});
    const auto before = [](const entry& a, const entry& b) {
        const auto c = *a.p <=> *b.p; // one comparison of the paths, not `<` and then `==`
        return c < 0 || (c == 0 && a.is_where && !b.is_where);
    };
    // The where nodes and the get nodes sorted apart, then merged (a where node before an equal
    // get node: it comes first). Both usually arrive in flatten order already (share_aliases,
    // paths from a walk), and a sorted run costs one comparison per entry, not log n.
    const auto middle = all.begin() + static_cast<std::ptrdiff_t>(where.size());
    for (const auto& [lo, hi] : {std::pair{all.begin(), middle}, std::pair{middle, all.end()}})
        if (!std::is_sorted(lo, hi, before)) std::sort(lo, hi, before);
    std::inplace_merge(all.begin(), middle, all.end(), before);
    std::vector<entry> open;
    bool nested = false;
    for (const auto& e : all) {
        while (!open.empty() && !open.back().p->is_prefix_of(*e.p))
            open.pop_back();
        // Many ties to one source: keep a single copy of it open.
        if (!e.is_where && !open.empty() && !open.back().is_where && *open.back().p == *e.p)
            continue;
        for (const auto& o : open) {
            if (o.is_where && e.is_where)
                throw_sharing("share", *e.p, "disjoint where nodes",
                              *o.p == *e.p
                                  ? std::string("the same node selected twice")
                                  : "a node inside the where node " + display_path(keystr(*o.p)));
            if (o.is_where && !e.is_where)
                throw_sharing("share", *o.p, "a where node that does not contain its get node",
                              "the get node " + display_path(keystr(*e.p)) +
                                  " inside it (a cycle)");
            if (!o.is_where && e.is_where) nested = true;
        }
        open.push_back(e);
    }
    disjoint_where out;
    out.nested = nested;
    out.order.reserve(where.size());
    for (const auto& e : all)
        if (e.is_where) out.order.push_back(e.index);
    return out;
}

// `h` mixed with `p`, entry by entry: equal paths give equal hashes, and no key-path text is
// built (a tie's source, a Shared node's tags).
std::size_t hash_path(std::size_t h, const path& p) {
    for (const path_entry& e : p)
        h = mix(h, std::visit(
                       [](const auto& k) -> std::size_t {
                           using K = std::decay_t<decltype(k)>;
                           if constexpr (std::is_same_v<K, index_key>)
                               return k.index;
                           else if constexpr (std::is_same_v<K, dict_key>)
                               return std::hash<std::string_view>{}(k.key);
                           else
                               return mix(0x6669656c64, std::hash<std::string_view>{}(k.name));
                       },
                       e));
    return h;
}

node_ptr placeholder(const get_entry& g) {
    auto meta = std::make_shared<tie_meta>();
    meta->source = g.from;
    meta->transforms = g.transforms;
    meta->fn = g.fn;
    meta->fn_name = g.fn_name;
    std::size_t h = 0x746965;
    if (g.fn) {
        h = mix(h, std::hash<const void*>{}(g.fn.get()));
    } else {
        h = hash_path(h, g.from);
        if (!g.transforms.empty()) h = mix(h, std::hash<std::string>{}(to_string(g.transforms)));
    }
    meta->hash = h;
    return make_node(node_kind::tied, std::vector<node_ptr>{},
                     std::shared_ptr<const tie_meta>(std::move(meta)));
}

// What expand computes: the values (a transposed tie a transposed copy), or only the
// structure (transforms change values and shapes, never structure, so they are skipped: no
// array is copied).
enum class expansion { values, structure };

} // namespace

tree scope_over(const tree& pruned, std::vector<std::pair<std::string, path>> tags) {
    auto meta = std::make_shared<shared_meta>();
    std::size_t h = 0x736861726564;
    for (const auto& [tag, p] : tags) {
        h = mix(h, std::hash<std::string>{}(tag));
        h = hash_path(h, p);
    }
    meta->tags = std::move(tags);
    meta->hash = h;
    return tree(make_node(node_kind::shared, std::vector<node_ptr>{pruned.node()},
                          std::shared_ptr<const shared_meta>(std::move(meta))));
}

std::vector<scope_tie> own_ties(const node& n) {
    std::vector<scope_tie> out;
    preorder(n, [&](const node& x, const walk_position<1>& at) {
        if ((x.flags & has_tied) == 0 || x.kind == node_kind::shared) return visit::skip;
        if (x.kind != node_kind::tied) return visit::descend;
        out.push_back({at.current_path(), &x});
        return visit::skip;
    });
    return out;
}

merged_scope merge_scope(node_ptr n, const path& prefix, const path& tag_prefix,
                         std::string_view context, const path& where) {
    merged_scope out;
    while (n->kind == node_kind::shared) {
        for (const auto& [tag, p] : meta_of<shared_meta>(n->meta).tags)
            out.tags.emplace_back(tag, tag_prefix / p);
        n = n->children[0];
    }
    std::vector<path> at;
    std::vector<tree> holders;
    for (const scope_tie& tie : own_ties(*n)) {
        const auto& m = meta_of<tie_meta>(tie.placeholder->meta);
        if (m.fn)
            throw_sharing(std::string(context), where / tie.at,
                          "a scope that can merge into the one around it (ties to paths only)",
                          fmt::format("a tie through the callable {}(), which reads its own "
                                      "scope: untie it first",
                                      m.fn_name));
        at.push_back(tie.at);
        holders.push_back(tie_placeholder({prefix / m.source, m.transforms, nullptr, {}}));
    }
    out.content =
        at.empty() ? std::move(n)
                   : tree_at_paths(
                         tree(n), at, [&](std::size_t i, const tree&) { return holders[i]; }, false)
                         .node();
    return out;
}

namespace {

// The node a placeholder of the scope with content `scope` reads (before its transforms).
const node* source_node(const node& scope, const tie_meta& m, std::string_view context) {
    return detail::locate(scope, m.source, context).target;
}

} // namespace

// The sources of `scope`'s ties that hold placeholders themselves, each after every source it
// reads (post-order), so that filling them in this order never meets an unfilled one. A tie
// whose source reads it back, directly or through other ties, is a sharing_error from
// `context`. An explicit stack: a chain of such sources may be as long as the ties are many.
std::vector<const node*> fill_order(const node& scope, std::string_view context) {
    struct frame {
        const node* source;
        std::vector<scope_tie> ties;
        std::size_t next = 0;
    };
    std::vector<const node*> order;
    std::unordered_map<const node*, bool> state; // false: being filled, true: done
    std::vector<frame> stack;
    stack.push_back({&scope, own_ties(scope), 0});
    while (!stack.empty()) {
        frame& f = stack.back();
        if (f.next == f.ties.size()) {
            if (stack.size() > 1) {
                state[f.source] = true;
                order.push_back(f.source);
            }
            stack.pop_back();
            continue;
        }
        const scope_tie& tie = f.ties[f.next++];
        const auto& m = meta_of<tie_meta>(tie.placeholder->meta);
        if (m.fn) continue;
        const node* source = source_node(scope, m, context);
        if ((source->flags & has_tied) == 0) continue;
        const auto [it, fresh] = state.try_emplace(source, false);
        if (!fresh && !it->second)
            throw_sharing(std::string(context), m.source,
                          "ties whose sources do not read each other",
                          "a cycle: this source holds a tie that leads back to it");
        if (fresh) stack.push_back({source, own_ties(*source), 0});
    }
    return order;
}

namespace {

// Fills every placeholder of one scope (whose inner Shared nodes are already expanded). A
// source that holds placeholders itself is filled first, once however many ties read it, so no
// placeholder survives into a value.
node_ptr fill(const node_ptr& scope, expansion what = expansion::values) {
    std::unordered_map<const node*, node_ptr> filled;
    // Sources that hold ties are rare: their order is worked out (a walk of every tie of the
    // scope) only when the first one is met, so a plain expand pays nothing for them.
    bool ordered = false;
    const std::function<node_ptr(const node_ptr&)> fill_with = [&](const node_ptr& root) {
        return rebuild(root, flag_is(has_tied), [&](const node_ptr& n) -> node_ptr {
            if (n->kind != node_kind::tied) return n;
            const auto& m = meta_of<tie_meta>(n->meta);
            if (m.fn) {
                tree value = (*m.fn)(tree(scope));
                check_callable_value("expand", {}, get_entry{{}, {}, m.fn, m.fn_name}, value);
                return std::move(value).take_node();
            }
            const node* at = source_node(*scope, m, "expand");
            if ((at->flags & has_tied) != 0 && !ordered) {
                ordered = true; // each filled after the sources it reads: no recursion here
                for (const node* source : fill_order(*scope, "expand"))
                    filled.emplace(source, fill_with(node_ptr::share(source)));
            }
            const node_ptr source =
                (at->flags & has_tied) != 0 ? filled.at(at) : node_ptr::share(at);
            return what == expansion::values ? apply_chain(tree(source), m.transforms).node()
                                             : source;
        });
    };
    return fill_with(scope);
}

// The node at `p` (a path_error from share when it does not exist) and the innermost Shared
// scope on the way, where a tie's relative source starts.
struct located {
    node_ptr target;
    node_ptr scope; // null outside any scope
};
located locate(const tree& t, const path& p) {
    const location at = detail::locate(*t.node(), p, "share");
    return {node_ptr::share(at.target), at.scope ? node_ptr::share(at.scope) : node_ptr()};
}

// The paths of the Shared nodes that `paths` pass into (a node on the way, not the end),
// deepest first: the scopes share merges into the new one.
std::vector<path> scopes_passed(const tree& t, const std::vector<path>& where,
                                const std::vector<get_entry>& gets) {
    std::set<path> found;
    const auto walk = [&](const path& p) {
        const node* cur = t.node().get();
        for (std::size_t d = 0; d < p.size() && cur; ++d) {
            if (cur->kind == node_kind::shared) found.insert(p.prefix(d));
            cur = skip_shared(cur);
            const auto i = find_child(*cur, p[d]);
            cur = i ? cur->children[*i].get() : nullptr;
        }
    };
    if ((t.node()->flags & has_shared) == 0) return {};
    for (const path& p : where)
        walk(p);
    for (const get_entry& g : gets)
        if (!g.fn) walk(g.from);
    std::vector<path> out(found.begin(), found.end());
    std::stable_sort(out.begin(), out.end(),
                     [](const path& a, const path& b) { return a.size() > b.size(); });
    return out;
}

// `t` with the Shared nodes at `scopes` (deepest first) merged into the scope above them:
// a tie placed inside an inner scope must be read from the new one, and a placeholder belongs
// to its innermost Shared node, so that node goes (its ties move up with it, re-sourced).
tree merge_scopes(tree t, const std::vector<path>& scopes,
                  std::vector<std::pair<std::string, path>>& tags) {
    for (std::size_t k = 0; k < scopes.size(); ++k) {
        const path& q = scopes[k];
        // The enclosing scope is the deepest other one on the way (all of them merge too).
        std::size_t base = 0;
        for (const path& r : scopes)
            if (r.size() < q.size() && r.is_prefix_of(q)) base = std::max(base, r.size());
        t = tree_at_paths(
            t, std::span<const path>(&q, 1),
            [&](std::size_t, const tree& chain) {
                merged_scope m = merge_scope(chain.node(), q.suffix(base), q, "share", q);
                tags.insert(tags.end(), m.tags.begin(), m.tags.end());
                return tree(std::move(m.content));
            },
            false);
    }
    return t;
}

} // namespace

tree share_impl(const tree& input, std::vector<path> where, std::vector<get_entry> gets,
                std::vector<std::pair<std::string, path>> tags) {
    if (where.empty()) throw_sharing("share", {}, "at least one where node", "none");
    if (gets.size() == 1 && where.size() > 1) gets.resize(where.size(), gets[0]);
    if (gets.size() != where.size())
        throw_sharing(
            "share", {},
            fmt::format("{} get nodes (one per where node, or one for all)", where.size()),
            fmt::format("{}", gets.size()));
    // A tie placed inside an existing scope, or reading through one, belongs to the new scope
    // (a placeholder is read from its innermost Shared node): the scopes on the way merge into
    // it, their ties re-sourced. Paths do not change (a Shared node adds no entry).
    const std::vector<path> passed = scopes_passed(input, where, gets);
    const tree t = passed.empty() ? input : merge_scopes(input, passed, tags);
    // The merged ties' sources must survive the pruning as the new ones' do.
    std::vector<get_entry> sources = gets;
    if (!passed.empty())
        for (const scope_tie& tie : own_ties(*t.node()))
            if (const auto& m = meta_of<tie_meta>(tie.placeholder->meta); !m.fn)
                sources.push_back({m.source, {}, nullptr, {}});
    // Each where-path resolved once, here; the fit check below reuses it (tree_at_paths
    // resolves them again as it rebuilds the tree).
    std::vector<located> targets;
    targets.reserve(where.size());
    for (const auto& w : where) {
        targets.push_back(locate(t, w));
        if (targets.back().target->kind == node_kind::tied)
            throw_sharing("share", w, "a node that is not tied yet", "a tie (untie it first)");
    }
    const disjoint_where disjoint = check_disjoint(where, sources);
    // A tie inside its own source would read itself (any other where node inside a get node
    // is a source that holds a tie, checked for cycles below).
    for (std::size_t i = 0; disjoint.nested && i < where.size(); ++i)
        if (!gets[i].fn && gets[i].from.is_prefix_of(where[i]))
            throw_sharing("share", where[i], "a where node outside its own get node",
                          "a node inside the get node " + display_path(keystr(gets[i].from)) +
                              " (a cycle)");
    // A node that holds ties is compared as what it stands for (rare: a tied source or target
    // that contains ties of its own).
    const auto as_value = [&](const path& p, const node_ptr& n) {
        return (n->flags & has_tied) == 0 ? tree(n)
                                          : sub_model(scope_over(t, {}), p, false, "share");
    };
    for (std::size_t i = 0; i < gets.size(); ++i) {
        const auto& g = gets[i];
        tree value;
        if (g.fn) {
            value = (*g.fn)(t);
        } else {
            const auto loc = locate(t, g.from);
            if (loc.target->kind == node_kind::tied)
                throw_sharing("share", g.from, "a get node that is not itself tied",
                              "a tie: tie to its source instead");
            check_array_source("share", g.from, *loc.target);
            value = as_value(g.from, loc.target);
        }
        check_fits("share", where[i], as_value(where[i], targets[i].target), value,
                   g.fn ? std::vector<transform>{} : g.transforms, [&] { return get_text(g); });
    }
    std::vector<tree> holders;
    holders.reserve(gets.size());
    for (const auto& g : gets)
        holders.emplace_back(placeholder(g));
    // The paths are known to exist and to be disjoint: rebuilt without a second check.
    const tree pruned = rebuild_at_sorted(t, where, disjoint.order,
                                          [&](std::size_t i, const tree&) { return holders[i]; });
    // A source that now holds a tie: the ties must not read each other round.
    if (disjoint.nested || !passed.empty()) (void)fill_order(*pruned.node(), "share");
    // A callable reads the pruned tree: what it returns there must be a value, not a
    // placeholder (its own, say, when it reads the position it fills).
    for (std::size_t i = 0; i < gets.size(); ++i)
        if (gets[i].fn) check_callable_value("share", where[i], gets[i], (*gets[i].fn)(pruned));
    return scope_over(pruned, std::move(tags));
}

tree tie_placeholder(const get_entry& g) {
    return tree(placeholder(g));
}

tree shared_scope(const tree& content, const std::vector<path>& where,
                  const std::vector<get_entry>& gets,
                  std::vector<std::pair<std::string, path>> tags) {
    // A file may spell a source as the tree does not (`.a.w` for a dict's ['a']['w']): the
    // disjointness check compares the tree's spelling, or a tie to itself would pass.
    std::vector<get_entry> spelled = gets;
    for (get_entry& g : spelled)
        if (!g.fn) g.from = canonical_path(*content.node(), g.from);
    if (check_disjoint(where, spelled).nested) (void)fill_order(*content.node(), "share");
    for (const get_entry& g : gets) {
        const auto loc = locate(content, g.from);
        if (loc.target->kind == node_kind::tied)
            throw_sharing("share", g.from, "a get node that is not itself tied",
                          "a tie: tie to its source instead");
        check_array_source("share", g.from, *loc.target);
        // Shapes alone: each array the tie copies must take its transforms.
        for (const tree& leaf : leaves(tree(loc.target)))
            if (leaf.is_array()) (void)chain_shapes(leaf.as_array().shape(), g.transforms);
    }
    return scope_over(content, std::move(tags));
}

tree untie_paths(const tree& t, const std::vector<path>& where) {
    std::vector<tree> values;
    values.reserve(where.size());
    for (const auto& w : where) {
        const auto loc = locate(t, w);
        if (loc.target->kind != node_kind::tied)
            throw_sharing("untie", w, "a tied position", describe(*loc.target));
        // What the position stands for, self-contained: its source's value, transformed.
        values.push_back(expand(sub_model(t, w, false, "untie")));
    }
    return tree_at_paths(
        t, where, [&](std::size_t i, const tree&) { return values[i]; }, false);
}

} // namespace detail

tree tie(const tree& t, const std::vector<path>& targets, const std::vector<path>& sources) {
    return share(t, targets, sources);
}

tree tie(const tree& t, const path& target, const path& source_path) {
    return share(t, target, source_path);
}

tree tie(const tree& t, std::string_view target, std::string_view source_path) {
    return share(t, target, source_path);
}

tree tie(const tree& t, const std::vector<std::string>& targets,
         const std::vector<std::string>& sources) {
    return share(t, targets, sources);
}

namespace {
tree expand_as(const tree& t, detail::expansion what) {
    detail::check_no_dangling(t, "expand");
    return tree(detail::rebuild(t.node(), detail::flag_is(detail::has_shared),
                                [what](const detail::node_ptr& n) {
                                    if (n->kind != node_kind::shared) return n;
                                    return detail::fill(n->children[0], what);
                                }));
}
} // namespace

tree expand(const tree& t) {
    return expand_as(t, detail::expansion::values);
}

namespace detail {
void check_no_dangling(const tree& t, std::string_view context) {
    if ((t.node()->flags & has_tied) == 0) return;
    // Outside every Shared node: where a placeholder's source is, nothing says.
    preorder(*t.node(), [&](const node& n, const walk_position<1>& at) {
        if ((n.flags & has_tied) == 0 || n.kind == node_kind::shared) return visit::skip;
        if (n.kind != node_kind::tied) return visit::descend;
        throw_sharing(std::string(context), at.current_path(),
                      "a tie inside the Shared node it belongs to",
                      fmt::format("the tie placeholder {} alone, cut from its scope (take "
                                  "sub-models with tree::at or pt::extract, which keep the "
                                  "tie or materialise it; tree::child does not)",
                                  tie_text(meta_of<tie_meta>(n.meta))));
    });
}
} // namespace detail

namespace {

// One leaf of expand(t) in flatten order: which leaf of t it comes from, and how.
struct plan_entry {
    std::size_t pruned;
    std::vector<transform> chain;
    bool tied;
};

std::vector<plan_entry> expansion_plan(const tree& t) {
    std::vector<plan_entry> plan;
    struct item {
        const detail::node* n;
        std::size_t offset; // index of the subtree's first leaf among t's leaves
        std::vector<transform> chain;
        bool tied;
        const detail::node* scope;
        std::size_t scope_offset;
    };
    std::vector<item> stack;
    stack.push_back({t.node().get(), 0, {}, false, nullptr, 0});
    while (!stack.empty()) {
        item it = std::move(stack.back());
        stack.pop_back();
        const auto& n = *it.n;
        switch (n.kind) {
        case node_kind::leaf:
            plan.push_back({it.offset, std::move(it.chain), it.tied});
            break;
        case node_kind::tied: {
            const auto& m = detail::meta_of<detail::tie_meta>(n.meta);
            if (m.fn)
                detail::throw_sharing("contract", {},
                                      "ties with named transforms (they have adjoints)",
                                      "a tie through the callable " + m.fn_name + "()");
            // Validated when the tie was made: the source exists in the scope.
            const detail::location source =
                detail::locate(*it.scope, m.source, "contract", /*leaf_offsets=*/true);
            const detail::node* src = source.target;
            const std::size_t offset = it.scope_offset + source.leaf_offset;
            std::vector<transform> chain = m.transforms;
            chain.insert(chain.end(), it.chain.begin(), it.chain.end());
            stack.push_back({src, offset, std::move(chain), true, it.scope, it.scope_offset});
            break;
        }
        case node_kind::shared:
            stack.push_back({n.children[0].get(), it.offset, it.chain, it.tied, n.children[0].get(),
                             it.offset});
            break;
        default: {
            std::vector<std::size_t> offsets(n.children.size());
            std::size_t o = it.offset;
            for (std::size_t k = 0; k < n.children.size(); ++k) {
                offsets[k] = o;
                o += n.children[k]->num_leaves;
            }
            for (std::size_t k = n.children.size(); k-- > 0;)
                stack.push_back({n.children[k].get(), offsets[k], it.chain, it.tied, it.scope,
                                 it.scope_offset});
        }
        }
    }
    return plan;
}

} // namespace

tree contract(const tree& t, const tree& expanded) {
    // The structure alone: a transposed tie is not copied only to be compared.
    const auto expected = structure(expand_as(t, detail::expansion::structure));
    auto [values, def] = flatten(expanded);
    if (!(def == expected)) {
        const auto d = detail::first_difference(expected, def);
        detail::throw_structure("contract", d ? d->where : path{},
                                (d ? d->left : expected.to_string()) + " (as in expand(t))",
                                d ? d->right : def.to_string());
    }
    const auto plan = expansion_plan(t);
    auto [pruned, pruned_def] = flatten(t);
    std::vector<tree> out(pruned.size());
    std::vector<bool> filled(pruned.size(), false);
    for (std::size_t j = 0; j < plan.size(); ++j) {
        const auto& e = plan[j];
        const tree& v = values[j];
        if (!v.is_array()) {
            if (!e.tied) out[e.pruned] = v; // non-array leaves are not summed: the source's wins
            continue;
        }
        const tree& source = pruned[e.pruned];
        array a = v.as_array();
        if (source.is_array() && !e.chain.empty()) {
            // Shapes along the chain, from the source's shape, then adjoints in reverse.
            const auto shapes = detail::chain_shapes(source.as_array().shape(), e.chain);
            for (std::size_t k = e.chain.size(); k-- > 0;)
                a = e.chain[k].adjoint(a, shapes[k]);
        }
        // Each use must give back an array of its leaf's shape and dtype (the chain's adjoints
        // restore the shape): else the sum would broadcast, or the leaf silently change shape.
        if (!source.is_array() || a.shape() != source.as_array().shape() ||
            a.dtype() != source.as_array().dtype())
            detail::throw_leaf("contract", def.leaf_paths()[j],
                               detail::describe(*source.node()) + " (the leaf of t it is a use of)",
                               a.describe());
        if (!filled[e.pruned]) {
            out[e.pruned] = a;
            filled[e.pruned] = true;
        } else {
            out[e.pruned] = kernels::add(out[e.pruned].as_array(), a);
        }
    }
    return unflatten(pruned_def, std::move(out));
}

std::vector<tie_info> ties(const tree& t) {
    std::vector<tie_info> out;
    // A tie's source path starts at its scope, the innermost Shared node above it, which the
    // walk position knows. Paths are built only at ties.
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        if ((n.flags & detail::has_tied) == 0) return detail::visit::skip;
        if (n.kind != node_kind::tied) return detail::visit::descend;
        const auto& m = detail::meta_of<detail::tie_meta>(n.meta);
        tie_info info;
        info.tied = at.current_path();
        if (m.fn) {
            info.getter = m.fn_name;
        } else {
            info.source = info.tied.prefix(at.scope_path_size()) / m.source;
        }
        info.transforms = m.transforms;
        out.push_back(std::move(info));
        return detail::visit::skip;
    });
    return out;
}

std::vector<tie_group> tie_groups(const tree& t) {
    std::vector<tie_group> out;
    for (auto& info : ties(t)) {
        if (!info.getter.empty()) continue; // a callable get has no source position
        auto it = std::find_if(out.begin(), out.end(),
                               [&](const tie_group& g) { return g.source == info.source; });
        if (it == out.end())
            out.push_back({info.source, {std::move(info.tied)}});
        else
            it->tied.push_back(std::move(info.tied));
    }
    return out;
}

parameter_count count_parameters(const tree& t) {
    parameter_count c;
    for (const auto& l : leaves(t)) {
        if (!is_float_array(l)) continue;
        ++c.arrays;
        c.elements += l.as_array().size();
    }
    for (const auto& l : leaves(expand(t))) {
        if (!is_float_array(l)) continue;
        ++c.expanded_arrays;
        c.expanded_elements += l.as_array().size();
    }
    return c;
}

} // namespace paramtree
