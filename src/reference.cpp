// paramtree — Inox-style references resolved into a Shared node.
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
    struct item {
        tree n;
        path at; // in the coordinates of the tree without markers
    };
    std::vector<item> stack{{t, {}}};
    while (!stack.empty()) {
        item it = std::move(stack.back());
        stack.pop_back();
        if (is_reference(it.n)) {
            const auto tag = std::get<std::string>(it.n.static_fields()[0].second.get());
            const tree value = it.n.child(0);
            const auto found = first.find(tag);
            if (found == first.end()) {
                first.emplace(tag, first_use{it.at, value});
                tags.emplace_back(tag, it.at);
                stack.push_back({value, std::move(it.at)});
            } else {
                const auto a = structure(found->second.value);
                const auto b = structure(value);
                if (!(a == b))
                    detail::throw_sharing(fmt::format("scope: reference '{}'", tag), it.at,
                                          fmt::format("{} (as at its first use {})", a.to_string(),
                                                      display_path(keystr(found->second.at))),
                                          b.to_string());
                where.push_back(it.at);
                gets.push_back(detail::get_entry{found->second.at, {}, nullptr, {}});
            }
            continue;
        }
        const auto children = it.n.children();
        for (std::size_t k = children.size(); k-- > 0;) {
            const auto e = detail::child_entry(it.n.node()->meta, it.n.kind(), k);
            stack.push_back({children[k], e ? it.at / *e : it.at});
        }
    }
    if (tags.empty()) return t;
    const tree unwrapped(detail::rebuild(
        t.node(), [](const detail::node& n) { return !n.children.empty(); },
        [](const detail::node_ptr& n) { return is_reference(tree(n)) ? n->children[0] : n; }));
    if (where.empty()) return unwrapped;
    // share_impl checks dtypes and shapes of every later use against the first.
    return detail::share_impl(unwrapped, std::move(where), std::move(gets), std::move(tags));
}

} // namespace paramtree
