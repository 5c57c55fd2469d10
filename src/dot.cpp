// paramtree — Graphviz DOT output with ties drawn as shared nodes.
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
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
    struct item {
        detail::node_ptr n;
        path at;
        std::size_t parent;
        std::string edge;
    };
    constexpr auto none = static_cast<std::size_t>(-1);
    std::vector<item> stack{{t.node(), {}, none, ""}};
    std::vector<std::pair<std::size_t, std::pair<path, std::string>>>
        tie_edges; // parent, (path, label)
    std::size_t next = 0;
    while (!stack.empty()) {
        item it = std::move(stack.back());
        stack.pop_back();
        const auto& n = *it.n;
        if (n.kind == node_kind::tied) {
            tie_edges.push_back({it.parent, {it.at, it.edge}});
            continue;
        }
        const std::size_t id = next++;
        if (n.kind != node_kind::shared || !ids.contains(keystr(it.at))) ids[keystr(it.at)] = id;
        const bool leaf = n.kind == node_kind::leaf;
        out += fmt::format(
            "  n{} [label=\"{}\", shape={}{}];\n", id, label(n), leaf ? "box" : "ellipse",
            n.kind == node_kind::shared ? ", style=filled, fillcolor=\"#fde9c9\"" : "");
        if (it.parent != none)
            out += fmt::format("  n{} -> n{} [label=\"{}\"];\n", it.parent, id, escape(it.edge));
        for (std::size_t k = n.children.size(); k-- > 0;) {
            const auto e = detail::child_entry(n.meta, n.kind, k);
            stack.push_back({n.children[k], e ? it.at / *e : it.at, id, e ? entry_str(*e) : ""});
        }
    }
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
