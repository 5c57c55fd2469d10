// paramtree — the shared helpers of tree and treedef walks (see <paramtree/detail/walk.hpp>):
// child entries and lookup by path entry, canonical paths, node and leaf descriptions, level
// comparison, treedef slices, and the first difference of two structures with its error.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/enum_names.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

#include <algorithm>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree::detail {

std::optional<path_entry> child_entry(const node_meta& meta, node_kind kind, std::size_t i) {
    switch (kind) {
    case node_kind::list:
    case node_kind::tuple:
        return index_key{i};
    case node_kind::dict:
        return dict_key{meta_of<dict_meta>(meta).sorted_keys[i]};
    case node_kind::record:
        return field_key{meta_of<record_meta>(meta).fields[i]};
    default:
        return std::nullopt;
    }
}

path_entry name_entry(const node& n, std::string_view name) {
    const node* cur = &n;
    while (cur->kind == node_kind::shared)
        cur = cur->children[0].get();
    if (cur->kind == node_kind::record) return field_key{std::string(name)};
    return dict_key{std::string(name)};
}

std::optional<std::size_t> find_child(const node& n, const path_entry& e) {
    const auto dict_index = [&](std::string_view key) -> std::optional<std::size_t> {
        const auto& keys = meta_of<dict_meta>(n.meta).sorted_keys;
        const auto it = std::lower_bound(keys.begin(), keys.end(), key);
        if (it == keys.end() || *it != key) return std::nullopt;
        return static_cast<std::size_t>(it - keys.begin());
    };
    // Dotted names (`layers.0.weight`, as checkpoints print them) do not say whether a name is
    // a field or a dict key, nor whether a number is a position or a key: a field or index
    // entry also finds the dict key of the same spelling. canonical_path rewrites such entries.
    if (const auto* k = std::get_if<index_key>(&e)) {
        if ((n.kind == node_kind::list || n.kind == node_kind::tuple) &&
            k->index < n.children.size())
            return k->index;
        if (n.kind == node_kind::dict) return dict_index(std::to_string(k->index));
        return std::nullopt;
    }
    if (const auto* k = std::get_if<dict_key>(&e)) {
        if (n.kind != node_kind::dict) return std::nullopt;
        return dict_index(k->key);
    }
    const auto& f = std::get<field_key>(e);
    if (n.kind == node_kind::dict) return dict_index(f.name);
    if (n.kind != node_kind::record) return std::nullopt;
    const auto& fields = meta_of<record_meta>(n.meta).fields;
    const auto it = std::find(fields.begin(), fields.end(), f.name);
    if (it == fields.end()) return std::nullopt;
    return static_cast<std::size_t>(it - fields.begin());
}

path canonical_path(const node& root, const path& p) {
    path out;
    const node* cur = &root;
    for (std::size_t k = 0; k < p.size(); ++k) {
        cur = skip_shared(cur);
        const auto i = find_child(*cur, p[k]);
        if (!i) {
            // The rest is left as written: the caller's existence check names the failing step.
            for (; k < p.size(); ++k)
                out.push_back(p[k]);
            break;
        }
        out.push_back(*child_entry(cur->meta, cur->kind, *i));
        cur = cur->children[*i].get();
    }
    return out;
}

std::string describe_node(node_kind kind, std::size_t arity, const node_meta& meta) {
    switch (kind) {
    case node_kind::leaf:
        return "a leaf";
    case node_kind::none:
        return "None";
    case node_kind::list:
        return fmt::format("a list of length {}", arity);
    case node_kind::tuple:
        return fmt::format("a tuple of length {}", arity);
    case node_kind::dict: {
        const auto& keys = meta_of<dict_meta>(meta).sorted_keys;
        std::vector<std::string> quoted;
        for (const auto& k : keys)
            quoted.push_back("'" + k + "'");
        return fmt::format("a dict with keys [{}]", fmt::join(quoted, ", "));
    }
    case node_kind::record: {
        const auto& r = meta_of<record_meta>(meta);
        std::vector<std::string> statics;
        for (const auto& [k, v] : r.statics)
            statics.push_back(k + "=" + v.to_string());
        return fmt::format("a {} record with fields ({}){}", r.name, fmt::join(r.fields, ", "),
                           statics.empty()
                               ? std::string()
                               : fmt::format(" and static ({})", fmt::join(statics, ", ")));
    }
    case node_kind::shared:
        return "a Shared node";
    case node_kind::tied: {
        const auto& t = meta_of<tie_meta>(meta);
        if (t.fn) return fmt::format("a tie to {}()", t.fn_name);
        return fmt::format("a tie to {}{}", display_path(keystr(t.source)),
                           to_string(t.transforms));
    }
    }
    return "?";
}

node_syntax syntax_of(node_kind kind, const node_meta& meta, std::size_t arity) {
    node_syntax out;
    switch (kind) {
    case node_kind::leaf:
        break;
    case node_kind::none:
        out.open = "None";
        out.atom = true;
        break;
    case node_kind::tied:
        out.open = tie_text(meta_of<tie_meta>(meta));
        out.atom = true;
        break;
    case node_kind::list:
    case node_kind::tuple: {
        const bool is_list = kind == node_kind::list;
        out.open = is_list ? "[" : "(";
        out.close = is_list ? "]" : ")";
        out.single_tuple = !is_list && arity == 1;
        for (std::size_t k = 0; k < arity; ++k)
            out.children.emplace_back(k, "");
        break;
    }
    case node_kind::dict: {
        const auto& m = meta_of<dict_meta>(meta);
        out.open = "{";
        out.close = "}";
        for (const auto s : m.insertion) // the order the user wrote the keys in
            out.children.emplace_back(s, quoted(m.sorted_keys[s]) + ": ");
        break;
    }
    case node_kind::record: {
        const auto& m = meta_of<record_meta>(meta);
        out.open = m.name + "(";
        out.close = ")";
        for (std::size_t k = 0; k < arity; ++k)
            out.children.emplace_back(k, m.fields[k] + "=");
        for (const auto& [name, value] : m.statics)
            out.statics.push_back(name + "=" + value.to_string());
        break;
    }
    case node_kind::shared:
        out.open = "Shared(";
        out.close = ")";
        out.children.emplace_back(0, "");
        break;
    }
    return out;
}

std::string describe_leaf(const leaf_value& v, leaf_style style) {
    const bool message = style == leaf_style::message;
    return std::visit(
        [message](const auto& x) -> std::string {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::monostate>)
                return message ? "an empty leaf" : "?";
            else if constexpr (std::is_same_v<X, array>)
                return x.describe();
            else if constexpr (std::is_same_v<X, std::string>)
                return (message ? "the string '" : "'") + x + "'";
            else {
                // bool, integer, double: the value, named by its type in messages.
                constexpr std::string_view type = std::is_same_v<X, bool>           ? "bool"
                                                  : std::is_same_v<X, std::int64_t> ? "integer"
                                                                                    : "double";
                return message ? fmt::format("the {} {}", type, x) : fmt::format("{}", x);
            }
        },
        v);
}

std::string describe(const node& n) {
    if (n.kind == node_kind::leaf) return describe_leaf(n.value);
    return describe_node(n.kind, n.children.size(), n.meta);
}

bool same_level(const treedef_node& a, const treedef_node& b) {
    return a.kind == b.kind && a.arity == b.arity && meta_equal(a.meta, b.meta);
}

bool same_level(const node& n, const treedef_node& d) {
    return n.kind == d.kind && n.children.size() == d.arity && meta_equal(n.meta, d.meta);
}

std::vector<std::size_t> child_positions(const std::vector<treedef_node>& nodes,
                                         std::size_t index) {
    const std::size_t arity = nodes[index].arity;
    std::vector<std::size_t> out(arity);
    std::size_t pos = index; // walk backwards: the last child ends right before the parent
    for (std::size_t k = arity; k-- > 0;) {
        --pos;
        out[k] = pos;
        pos = pos + 1 - nodes[pos].num_nodes;
    }
    return out;
}

treedef make_treedef(std::vector<treedef_node> nodes) {
    auto impl = std::make_shared<treedef_impl>();
    impl->hash = hash_nodes(nodes);
    impl->nodes = std::move(nodes);
    return treedef(std::move(impl));
}

treedef slice(const treedef& t, std::size_t last) {
    const auto& nodes = t.nodes();
    const std::size_t first = last + 1 - nodes[last].num_nodes;
    return make_treedef(
        std::vector<treedef_node>(nodes.begin() + static_cast<std::ptrdiff_t>(first),
                                  nodes.begin() + static_cast<std::ptrdiff_t>(last) + 1));
}

namespace {
[[noreturn]] void throw_mismatch(std::string context, const treedef& expected, const treedef& found,
                                 std::string_view expected_name, std::string_view found_name) {
    const auto d = first_difference(expected, found);
    std::string left = d ? d->left : expected.to_string();
    std::string right = d ? d->right : found.to_string();
    // The usual cause of a tie on one side only: one tree came from pt::expand (or from a
    // model before share), the other from the pruned tree. Say so, with the fix.
    const auto tie_like = [](node_kind k) {
        return k == node_kind::tied || k == node_kind::shared;
    };
    std::string hint;
    if (d && tie_like(d->left_kind) != tie_like(d->right_kind))
        hint = fmt::format(
            " (one of {} and {} is tied and the other is not: gradients and optimizer state have "
            "the pruned structure of the tied parameters, so take value_and_grad and "
            "optimizer.init of the same tied tree, not of pt::expand of it)",
            expected_name, found_name);
    throw_structure(std::move(context), d ? d->where : path{},
                    fmt::format("{} (as in {})", left, expected_name),
                    fmt::format("{} in {}{}", right, found_name, hint));
}
} // namespace

void throw_structure_mismatch(std::string_view context, const treedef& expected,
                              const treedef& found, std::size_t k) {
    throw_mismatch(fmt::format("{}: structure mismatch", context), expected, found, "tree 0",
                   fmt::format("tree {}", k));
}

void throw_structure_mismatch(std::string_view context, const treedef& expected,
                              const treedef& found, std::string_view expected_name,
                              std::string_view found_name) {
    throw_mismatch(
        fmt::format("{}: structure mismatch between {} and {}", context, expected_name, found_name),
        expected, found, expected_name, found_name);
}

std::optional<difference> first_difference(const treedef& a, const treedef& b) {
    if (a == b) return std::nullopt;
    std::optional<difference> found;
    preorder2(a.nodes(), b.nodes(),
              [&](const treedef_node& x, const treedef_node& y, const def_position<2>& at) {
                  if (same_level(x, y)) return visit::descend;
                  // The path is built once, here, not moved along at every node.
                  found = difference{at.current_path(), describe_node(x.kind, x.arity, x.meta),
                                     describe_node(y.kind, y.arity, y.meta), x.kind, y.kind};
                  return visit::stop;
              });
    return found;
}

} // namespace paramtree::detail
