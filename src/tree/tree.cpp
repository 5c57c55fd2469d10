// paramtree — tree nodes: construction, iterative destruction, accessors.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/enum_names.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace paramtree {

tree::tree() noexcept : node_(detail::none_node()) {}
tree::tree(array a) : node_(detail::make_leaf(std::move(a))) {}
tree::tree(bool b) : node_(detail::make_leaf(b)) {}
tree::tree(double v) : node_(detail::make_leaf(v)) {}
tree::tree(std::string s) : node_(detail::make_leaf(std::move(s))) {}

void tree::throw_not(std::string_view expected) const {
    std::string found = detail::describe(*node());
    // The common mistake with ties: reading a tied position of a pruned tree. Say the fix.
    if (kind() == node_kind::tied)
        found += " (this position holds no value of its own: read tied values from "
                 "pt::expand(tree), or read the source position)";
    // A tree handle does not know where it sits in a bigger tree: no "at <root>" that would
    // point at the wrong place.
    throw leaf_error(error::unlocated_t{}, "leaf access", std::string(expected), std::move(found));
}

const array& tree::as_array() const {
    if (const auto* a = is_leaf() ? std::get_if<array>(&node()->value) : nullptr) return *a;
    throw_not("an array leaf");
}

const detail::leaf_value& tree::value() const {
    if (!is_leaf()) throw_not("a leaf");
    return node()->value;
}

tree tree::child(std::size_t i) const {
    if (i >= size())
        detail::throw_path("tree::child", {}, fmt::format("a child index below {}", size()),
                           fmt::format("{} in {}", i, detail::describe(*node())));
    return tree(node()->children[i]);
}

std::vector<tree> tree::children() const {
    std::vector<tree> out;
    out.reserve(size());
    for (const auto& c : node()->children)
        out.emplace_back(c);
    return out;
}

tree tree::operator[](std::size_t i) const {
    return at(path{index_key{i}});
}

tree tree::operator[](std::string_view name) const {
    return at(path{detail::name_entry(*node(), name)});
}

tree tree::at(const path& p) const {
    // A subtree below a Shared node comes out self-contained (<paramtree/submodel.hpp>): its
    // ties to outside sources materialised, its inner ones kept.
    return detail::sub_model(*this, p, false, "tree::at");
}

bool tree::contains(const path& p) const noexcept {
    return detail::try_locate(*node_, p).target != nullptr;
}

std::vector<std::string> tree::keys() const {
    const detail::node* n = detail::skip_shared(node().get());
    if (n->kind == node_kind::dict) {
        const auto& m = detail::meta_of<detail::dict_meta>(n->meta);
        std::vector<std::string> out;
        out.reserve(m.insertion.size());
        for (const auto s : m.insertion)
            out.push_back(m.sorted_keys[s]);
        return out;
    }
    if (n->kind == node_kind::record) return detail::meta_of<detail::record_meta>(n->meta).fields;
    return {};
}

path_entry tree::entry(std::size_t i) const {
    if (i >= size())
        detail::throw_path("tree::entry", {}, fmt::format("a child index below {}", size()),
                           fmt::format("{}", i));
    const auto e = detail::child_entry(node()->meta, kind(), i);
    if (!e)
        detail::throw_path("tree::entry", {}, "a list, tuple, dict or record",
                           detail::describe(*node()));
    return *e;
}

std::string_view tree::record_name() const noexcept {
    if (kind() != node_kind::record) return {};
    // noexcept: a record without record metadata (a broken invariant) has no name to give.
    const auto* m = std::get_if<std::shared_ptr<const detail::record_meta>>(&node()->meta);
    return m && *m ? std::string_view((*m)->name) : std::string_view();
}

const std::vector<std::pair<std::string, static_value>>& tree::static_fields() const {
    static const std::vector<std::pair<std::string, static_value>> empty;
    if (kind() != node_kind::record) return empty;
    return detail::meta_of<detail::record_meta>(*node()).statics;
}

const static_value& tree::static_field(std::string_view name) const {
    for (const auto& [k, v] : static_fields())
        if (k == name) return v;
    detail::throw_path("tree::static_field", {}, fmt::format("a static field '{}'", name),
                       detail::describe(*node()));
}

namespace {
std::vector<detail::node_ptr> take_nodes(std::vector<tree>&& items) {
    std::vector<detail::node_ptr> out;
    out.reserve(items.size());
    for (auto& t : items)
        out.push_back(t.node());
    return out;
}
} // namespace

tree list(std::vector<tree> items) {
    return tree(detail::make_node(node_kind::list, take_nodes(std::move(items)), {}));
}

tree tuple(std::vector<tree> items) {
    return tree(detail::make_node(node_kind::tuple, take_nodes(std::move(items)), {}));
}

tree dict(std::vector<std::pair<std::string, tree>> items) {
    std::vector<std::uint32_t> order(items.size());
    std::iota(order.begin(), order.end(), 0U);
    std::stable_sort(order.begin(), order.end(),
                     [&](auto a, auto b) { return items[a].first < items[b].first; });
    auto meta = std::make_shared<detail::dict_meta>();
    meta->insertion.resize(items.size());
    std::vector<detail::node_ptr> children;
    children.reserve(items.size());
    for (std::size_t s = 0; s < order.size(); ++s) {
        auto& [key, value] = items[order[s]];
        if (s > 0 && key == meta->sorted_keys.back())
            detail::throw_structure("dict", path{dict_key{key}}, "unique keys",
                                    fmt::format("the key '{}' twice", key));
        meta->insertion[order[s]] = static_cast<std::uint32_t>(s);
        meta->sorted_keys.push_back(std::move(key));
        children.push_back(value.node());
    }
    std::size_t h = 0x64696374;
    for (const auto& k : meta->sorted_keys)
        h = detail::mix(h, std::hash<std::string>{}(k));
    meta->hash = h;
    return tree(detail::make_node(node_kind::dict, std::move(children),
                                  std::shared_ptr<const detail::dict_meta>(std::move(meta))));
}

tree record(std::string name, std::vector<std::pair<std::string, tree>> fields,
            std::vector<std::pair<std::string, static_value>> statics) {
    if (name.starts_with(detail::reserved_record_prefix))
        detail::throw_structure("record " + name, {},
                                fmt::format("a record name outside the reserved '{}' namespace",
                                            detail::reserved_record_prefix),
                                fmt::format("'{}' (names of paramtree's own modules: build them "
                                            "with pt::nn::linear, ...)",
                                            name));
    return detail::reserved_record(std::move(name), std::move(fields), std::move(statics));
}

namespace detail {
tree reserved_record(std::string name, std::vector<std::pair<std::string, tree>> fields,
                     std::vector<std::pair<std::string, static_value>> statics) {
    auto meta = std::make_shared<detail::record_meta>();
    std::vector<detail::node_ptr> children;
    children.reserve(fields.size());
    std::size_t h = detail::mix(0x7265636f7264, std::hash<std::string>{}(name));
    auto check_name = [&](const std::string& f) {
        // Field names are identifiers, so `.name` in a key path and in a dotted checkpoint name
        // always means exactly this field: a name like `x[0]` or `a.b` would read back as
        // another path and re-tie a saved tie to another leaf.
        if (!detail::is_identifier(f))
            detail::throw_structure("record " + name, {},
                                    "field names that are identifiers ([A-Za-z_][A-Za-z0-9_]*)",
                                    fmt::format("'{}'", escaped(f)));
        const bool dup =
            std::find(meta->fields.begin(), meta->fields.end(), f) != meta->fields.end() ||
            std::any_of(meta->statics.begin(), meta->statics.end(),
                        [&](const auto& s) { return s.first == f; });
        if (dup)
            detail::throw_structure("record " + name, path{field_key{f}}, "unique field names",
                                    fmt::format("the field '{}' twice", f));
    };
    for (auto& [f, value] : fields) {
        check_name(f);
        h = detail::mix(h, std::hash<std::string>{}(f));
        meta->fields.push_back(std::move(f));
        children.push_back(value.node());
    }
    for (auto& [f, value] : statics) {
        check_name(f);
        h = detail::mix(h, std::hash<std::string>{}(f));
        h = detail::mix(h, std::hash<std::string>{}(value.to_string()));
        meta->statics.emplace_back(std::move(f), std::move(value));
    }
    meta->name = std::move(name);
    meta->hash = h;
    return tree(detail::make_node(node_kind::record, std::move(children),
                                  std::shared_ptr<const detail::record_meta>(std::move(meta))));
}
} // namespace detail

std::string describe(const tree& t) {
    return detail::describe(*t.node());
}

} // namespace paramtree
