// paramtree — Graphviz DOT output with ties drawn as shared nodes.
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/detail/cursor.hpp>
#include <paramtree/dot.hpp>
#include <paramtree/shared.hpp>

#include <unordered_map>

#include <fmt/format.h>

namespace paramtree {

namespace {
std::string escape(const std::string& s) {
    std::string out;
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

std::string label(const detail::node& n) {
    switch (n.kind) {
    case node_kind::leaf:
        return detail::describe_leaf(n.value);
    case node_kind::record: {
        const auto& m = detail::meta_of<detail::record_meta>(n.meta);
        std::string s = m.name;
        for (const auto& [k, v] : m.statics)
            s += fmt::format("\\n{}={}", k, escape(v.to_string()));
        return s;
    }
    default:
        return std::string(kind_name(n.kind));
    }
}
} // namespace

std::string to_dot(const tree& t, const std::string& name) {
    std::string out =
        fmt::format("digraph \"{}\" {{\n  node [fontname=\"Helvetica\", fontsize=11];\n"
                    "  edge [fontname=\"Helvetica\", fontsize=10];\n",
                    escape(name));
    // Pass 1: an id per non-placeholder node, found by its path.
    std::unordered_map<std::string, std::size_t> ids;
    constexpr auto none = static_cast<std::size_t>(-1);
    std::vector<std::size_t> branch; // the ids of the current node's ancestors, root first
    std::vector<std::pair<std::size_t, std::pair<path, std::string>>>
        tie_edges; // parent, (path, label)
    std::size_t next = 0;
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& at) {
        branch.resize(at.depth());
        const std::size_t parent = branch.empty() ? none : branch.back();
        const auto e = at.entry();
        const std::string edge = e ? entry_str(*e) : "";
        path here = at.current_path();
        if (n.kind == node_kind::tied) {
            tie_edges.push_back({parent, {std::move(here), edge}});
            return detail::visit::skip;
        }
        const std::string key = keystr(here);
        const std::size_t id = next++;
        if (n.kind != node_kind::shared || !ids.contains(key)) ids[key] = id;
        const bool leaf = n.kind == node_kind::leaf;
        out += fmt::format(
            "  n{} [label=\"{}\", shape={}{}];\n", id, label(n), leaf ? "box" : "ellipse",
            n.kind == node_kind::shared ? ", style=filled, fillcolor=\"#fde9c9\"" : "");
        if (parent != none)
            out += fmt::format("  n{} -> n{} [label=\"{}\"];\n", parent, id, escape(edge));
        branch.push_back(id);
        return detail::visit::descend;
    });
    // Pass 2: a tied position is an edge to its source's node.
    for (const auto& info : ties(t)) {
        for (const auto& [parent, where] : tie_edges) {
            if (where.first != info.tied) continue;
            const auto src = ids.find(keystr(info.source));
            const std::string text =
                where.second +
                (info.getter.empty() ? to_string(info.transforms) : " via " + info.getter + "()");
            if (src == ids.end()) {
                out += fmt::format("  n{}t [label=\"{}()\", shape=box, style=dashed];\n", parent,
                                   escape(info.getter));
                out += fmt::format("  n{} -> n{}t [label=\"{}\", style=dashed];\n", parent, parent,
                                   escape(text));
            } else {
                out += fmt::format("  n{} -> n{} [label=\"{}\", style=dashed, color=\"#c0392b\", "
                                   "fontcolor=\"#c0392b\"];\n",
                                   parent, src->second, escape(text));
            }
        }
    }
    return out + "}\n";
}

} // namespace paramtree
