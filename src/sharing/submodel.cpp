// paramtree — sub-models of tied models (see <paramtree/submodel.hpp>): the self-contained
// subtree every path lookup returns, extract, and graft.
#include <paramtree/submodel.hpp>

#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <span>

#include <fmt/format.h>

namespace paramtree::detail {

namespace {

std::string source_text(const tie_meta& m, const path& scope_path) {
    if (m.fn) return fmt::format("the callable {}()", m.fn_name);
    return display_path(keystr(scope_path / m.source)) + to_string(m.transforms);
}

// The value the tie `m` of the scope at `scope_path` in `t` stands for, self-contained.
tree outside_value(const tree& t, const path& scope_path, const node& scope, const tie_meta& m,
                   std::string_view context) {
    if (m.fn) return (*m.fn)(tree(node_ptr::share(&scope)));
    return apply_chain(expand(sub_model(t, scope_path / m.source, false, context)), m.transforms);
}

// The Shared node's tags that lie under `rel`, re-rooted there.
std::vector<std::pair<std::string, path>> tags_under(const node* owner, const path& rel) {
    std::vector<std::pair<std::string, path>> out;
    if (!owner) return out;
    for (const auto& [tag, p] : meta_of<shared_meta>(owner->meta).tags)
        if (rel.is_prefix_of(p)) out.emplace_back(tag, p.suffix(rel.size()));
    return out;
}

// The one path a where of extract or graft selects.
const path& single(const std::vector<path>& where, std::string_view context) {
    if (where.size() != 1)
        throw_path(std::string(context), {}, "one selected node",
                   fmt::format("{} selections", where.size()));
    return where.front();
}

tree replaced(const tree& t, const std::vector<path>& at, const std::vector<tree>& values) {
    if (at.empty()) return t;
    return tree_at_paths(
        t, at, [&](std::size_t i, const tree&) { return values[i]; }, false);
}

} // namespace

tree sub_model(const tree& t, const path& p, bool refuse_outside, std::string_view context) {
    const location at = locate(*t.node(), p, context);
    tree target(node_ptr::share(at.target));
    // Outside every scope, or nothing of the scope below: the subtree as it is (the common
    // case, and O(1): the flag says whether any placeholder is below).
    if (!at.scope || (at.target->flags & has_tied) == 0) return target;
    const std::vector<scope_tie> ties = own_ties(*at.target);
    if (ties.empty()) return target;
    const path rel = p.suffix(at.scope_depth);
    const path scope_path = p.prefix(at.scope_depth);
    std::vector<path> where;
    std::vector<tree> values;
    bool kept = false;
    for (const scope_tie& tie : ties) {
        const auto& m = meta_of<tie_meta>(tie.placeholder->meta);
        where.push_back(tie.at);
        if (!m.fn && rel.is_prefix_of(m.source)) {
            // Source inside: still a tie, read from the sub-model's own scope.
            values.push_back(
                tie_placeholder({m.source.suffix(rel.size()), m.transforms, nullptr, {}}));
            kept = true;
            continue;
        }
        if (refuse_outside)
            throw_sharing(std::string(context), p / tie.at,
                          "a sub-model whose ties have their sources inside it",
                          fmt::format("a tie to {} outside it (extract with "
                                      "pt::outside_ties::materialize, or untie it first)",
                                      source_text(m, scope_path)));
        values.push_back(outside_value(t, scope_path, *at.scope, m, context));
    }
    tree rebuilt = replaced(target, where, values);
    if (!kept) return rebuilt;
    return scope_over(rebuilt, tags_under(at.scope_owner, rel));
}

tree extract_at(const tree& t, const std::vector<path>& where, outside_ties policy) {
    return sub_model(t, single(where, "extract"), policy == outside_ties::refuse, "extract");
}

namespace {

// What graft builds inside one scope.
struct graft_plan {
    std::vector<path> at;    // relative to the scope's content: the region, then written sources
    std::vector<tree> value; // what goes there
};

// The ties of the old region (`old`) whose sources lie outside it: each stays tied, and the
// value `region` holds at its position is written to the source.
void keep_outward_ties(const tree& t, const location& at, const path& p, tree& region,
                       graft_plan& plan) {
    const path rel = p.suffix(at.scope_depth);
    const path scope_path = p.prefix(at.scope_depth);
    std::vector<path> keep_at;
    std::vector<tree> keep;
    for (const scope_tie& tie : own_ties(*at.target)) {
        const auto& m = meta_of<tie_meta>(tie.placeholder->meta);
        if (!m.fn && rel.is_prefix_of(m.source)) continue; // inside: the sub-model says
        const path full = p / tie.at;
        const std::string src = source_text(m, scope_path);
        const location given_at = try_locate(*region.node(), tie.at);
        if (!given_at.target || given_at.scope || (given_at.target->flags & has_tied) != 0)
            throw_sharing("graft", full,
                          fmt::format("a plain value at this tied position (it takes its value "
                                      "from {})",
                                      src),
                          !given_at.target ? std::string("no such position in the sub-model "
                                                         "(untie it first)")
                                           : std::string("a tie or Shared node of the "
                                                         "sub-model's own there"));
        const tree given(node_ptr::share(given_at.target));
        keep_at.push_back(tie.at);
        keep.emplace_back(node_ptr::share(tie.placeholder));
        const tree current = outside_value(t, scope_path, *at.scope, m, "graft");
        if (m.fn) {
            // A callable has no inverse: its value can be kept, not written.
            if (!tree_equal(given, current))
                throw_sharing("graft", full, "the value the callable tie gives (" + src + ")",
                              "a different value in the sub-model (untie it first)");
            continue;
        }
        // The source as stored: a write would replace the ties inside it.
        const node* stored = locate(*at.scope, m.source, "graft").target;
        if ((stored->flags & (has_tied | has_shared)) != 0)
            throw_sharing("graft", full, "a tie whose source holds no ties (written back)",
                          "a source with ties of its own: " + src);
        const tree source(node_ptr::share(stored));
        check_fits("graft", full, given, source, m.transforms,
                   [&] { return fmt::format("{} (the tie's source)", src); });
        tree back = invert_chain(given, m.transforms, source);
        // Two uses of one source: one value, or the write is ambiguous.
        bool seen = false;
        for (std::size_t k = 1; k < plan.at.size(); ++k) {
            if (plan.at[k] != m.source) continue;
            seen = true;
            if (!tree_equal(plan.value[k], back))
                throw_sharing("graft", full, "one value for every use of " + src,
                              "a different value than another use in the sub-model");
        }
        if (!seen) {
            plan.at.push_back(m.source);
            plan.value.push_back(std::move(back));
        }
    }
    region = replaced(region, keep_at, keep);
}

// The ties of the rest of the scope whose sources lie inside the region: the sub-model must
// hold a source of the old one's structure, dtypes and shapes at the same place.
void check_inward_ties(const location& at, const path& p, const tree& region) {
    const path rel = p.suffix(at.scope_depth);
    const path scope_path = p.prefix(at.scope_depth);
    for (const scope_tie& tie : own_ties(*at.scope)) {
        const auto& m = meta_of<tie_meta>(tie.placeholder->meta);
        if (m.fn || rel.is_prefix_of(tie.at) || !rel.is_prefix_of(m.source)) continue;
        const location now = try_locate(*region.node(), m.source.suffix(rel.size()));
        const path full = scope_path / tie.at;
        if (!now.target || now.scope || now.target->kind == node_kind::tied)
            throw_sharing("graft", full,
                          fmt::format("the tie's source {} in the sub-model, untied",
                                      display_path(keystr(scope_path / m.source))),
                          !now.target ? std::string("no such position (untie the tie first)")
                                      : std::string("a tie or a position inside a Shared node"));
        const tree old(node_ptr::share(locate(*at.scope, m.source, "graft").target));
        check_fits("graft", scope_path / m.source, old, tree(node_ptr::share(now.target)), {},
                   [] { return std::string("the sub-model (what the tie reads now)"); });
    }
}

// `chain` (the Shared nodes at one position, outermost first) with its innermost node, the
// one whose content is `owner`'s, replaced by `scope`.
tree with_scope(const tree& chain, const node* owner, const tree& scope) {
    if (chain.node().get() == owner) return scope;
    const node& n = *chain.node();
    return tree(make_node(
        node_kind::shared,
        std::vector<node_ptr>{with_scope(tree(n.children[0]), owner, scope).node()}, n.meta));
}

} // namespace

tree graft_at(const tree& t, const std::vector<path>& where, const tree& sub) {
    const path& p = single(where, "graft");
    const location at = locate(*t.node(), p, "graft");
    if (!at.scope) {
        // No scope around: nothing of t can be tied to the region (sub keeps its own scope).
        const std::vector<path> one{p};
        return replaced(t, one, {sub});
    }
    const path rel = p.suffix(at.scope_depth);
    const path scope_path = p.prefix(at.scope_depth);
    // The sub-model's own scope joins the enclosing one, its ties re-rooted at the region —
    // unless a scope of its own stood there (then it stays one: graft(t, p, t.at(p)) is t).
    merged_scope merged = at.target->kind == node_kind::shared
                              ? merged_scope{sub.node(), {}}
                              : merge_scope(sub.node(), rel, rel, "graft", p);
    tree region(std::move(merged.content));
    graft_plan plan{{rel}, {tree()}};
    keep_outward_ties(t, at, p, region, plan);
    check_inward_ties(at, p, region);
    plan.value[0] = region;
    const tree content = replaced(tree(node_ptr::share(at.scope)), plan.at, plan.value);
    (void)fill_order(*content.node(), "graft"); // the merged ties must not read each other round
    // The scope's tags name positions: each is kept while its position is there, and the
    // sub-model's own (re-rooted) ones join them, once.
    std::vector<std::pair<std::string, path>> tags;
    for (const auto& tag : meta_of<shared_meta>(at.scope_owner->meta).tags)
        if (try_locate(*content.node(), tag.second).target) tags.push_back(tag);
    for (auto& tag : merged.tags)
        if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(std::move(tag));
    const tree scope = scope_over(content, std::move(tags));
    const std::vector<path> chain_at{scope_path};
    return tree_at_paths(
        t, chain_at,
        [&](std::size_t, const tree& chain) { return with_scope(chain, at.scope_owner, scope); },
        false);
}

} // namespace paramtree::detail
