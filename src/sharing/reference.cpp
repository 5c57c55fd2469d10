// paramtree — Inox-style references resolved into a Shared node.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/reference.hpp>
#include <paramtree/shared.hpp>

#include <map>

#include <fmt/format.h>

namespace paramtree {

tree reference(std::string tag, const tree& subtree) {
    return record("Reference", {{"value", subtree}}, {{"tag", std::move(tag)}});
}

bool is_reference(const tree& t) {
    if (t.kind() != node_kind::record || t.record_name() != "Reference" || t.size() != 1)
        return false;
    const auto& statics = t.static_fields();
    return statics.size() == 1 && statics[0].first == "tag" &&
           statics[0].second.holds<std::string>() && t.keys()[0] == "value";
}

tree scope(const tree& t) {
    struct first_use {
        path at;
        tree value;
    };
    std::map<std::string, first_use> first;
    std::vector<path> where;
    std::vector<detail::get_entry> gets;
    std::vector<std::pair<std::string, path>> tags;
    // For each node above the current one: its entry in the coordinates of the tree without
    // markers (none at the root, for a Reference's `value` and for a Shared node's child), and
    // whether it is a Reference (each node is checked once). The path is put together only at
    // a Reference.
    struct level {
        std::optional<path_entry> entry;
        bool marker;
    };
    std::vector<level> levels;
    const auto here = [&] {
        path p;
        for (const auto& l : levels)
            if (l.entry) p.push_back(*l.entry);
        return p;
    };
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        levels.resize(at.depth());
        const detail::node* parent = at.parent();
        const bool marker =
            n.kind == node_kind::record && is_reference(tree(detail::node_ptr::share(&n)));
        levels.push_back({parent == nullptr || levels.back().marker
                              ? std::nullopt
                              : detail::child_entry(parent->meta, parent->kind, at.index()),
                          marker});
        if (!marker) return detail::visit::descend;
        const tree ref(detail::node_ptr::share(&n));
        const auto tag = std::get<std::string>(ref.static_fields()[0].second.get());
        const tree value = ref.child(0);
        const path at_here = here();
        const auto found = first.find(tag);
        if (found == first.end()) {
            first.emplace(tag, first_use{at_here, value});
            tags.emplace_back(tag, at_here);
            return detail::visit::descend;
        }
        const auto a = structure(found->second.value);
        const auto b = structure(value);
        if (!(a == b))
            detail::throw_sharing(fmt::format("scope: reference '{}'", tag), at_here,
                                  fmt::format("{} (as at its first use {})", a.to_string(),
                                              display_path(keystr(found->second.at))),
                                  b.to_string());
        where.push_back(at_here);
        gets.push_back(detail::get_entry{found->second.at, {}, nullptr, {}});
        return detail::visit::skip;
    });
    if (tags.empty()) return t;
    const tree unwrapped(detail::rebuild(
        t.node(), [](const detail::node& n) { return !n.children.empty(); },
        [](const detail::node_ptr& n) { return is_reference(tree(n)) ? n->children[0] : n; }));
    if (where.empty()) return unwrapped;
    // share_impl checks dtypes and shapes of every later use against the first.
    return detail::share_impl(unwrapped, std::move(where), std::move(gets), std::move(tags));
}

} // namespace paramtree
