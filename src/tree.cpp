// paramtree — tree nodes: construction, iterative destruction, accessors.
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

namespace detail {

struct node_factory {
    // One allocation holds the node and its children array.
    static node* allocate(std::size_t n_children) {
        void* mem = ::operator new(sizeof(node) + n_children * sizeof(node_ptr));
        node* n = new (mem) node;
        n->children.data_ =
            reinterpret_cast<node_ptr*>(static_cast<std::byte*>(mem) + sizeof(node));
        n->children.size_ = static_cast<std::uint32_t>(n_children);
        n->children.raw_size_ = static_cast<std::uint32_t>(n_children);
        return n;
    }
    static void set_children(node* n, node_ptr* data, std::size_t size) {
        n->children.data_ = data;
        n->children.size_ = static_cast<std::uint32_t>(size);
        n->children.raw_size_ = static_cast<std::uint32_t>(size);
    }
    // A node whose `raw` entries are chunks holding `size` children in all.
    static node* allocate_chunked(std::size_t raw, std::size_t size) {
        node* n = allocate(raw);
        n->children.size_ = static_cast<std::uint32_t>(size);
        return n;
    }
};

namespace {
void finish_counts(node* n) {
    std::size_t leaves = 0;
    std::size_t nodes = 1;
    for (const auto& c : n->children) {
        leaves += c->num_leaves;
        nodes += c->num_nodes;
    }
    n->num_leaves = leaves;
    n->num_nodes = nodes;
    std::uint8_t flags = n->kind == node_kind::shared ? has_shared
                         : n->kind == node_kind::tied ? has_tied
                                                      : 0;
    for (const auto& c : n->children)
        flags |= c->flags;
    n->flags = flags;
}
} // namespace

void destroy(const node* n) noexcept {
    // Releasing a long chain recursively would overflow the stack, and a work vector would
    // allocate while freeing: dead nodes are linked through their (now unused) node count.
    auto* dead = const_cast<node*>(n);
    dead->num_nodes = 0; // end of the list
    while (dead != nullptr) {
        node* cur = dead;
        dead = reinterpret_cast<node*>(cur->num_nodes);
        node_ptr* kids = cur->children.raw_data();
        for (std::size_t i = 0; i < cur->children.raw_size(); ++i) {
            auto* child = const_cast<node*>(kids[i].detach());
            if (child->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                child->num_nodes = reinterpret_cast<std::size_t>(dead);
                dead = child;
            }
        }
        slab* home = cur->home;
        cur->~node();
        if (home == nullptr)
            ::operator delete(cur);
        else if (home->live.fetch_sub(1, std::memory_order_acq_rel) == 1)
            ::operator delete(home);
    }
}

namespace {
// A hidden node holding children [first, first + count): the unit wide nodes share.
node_ptr make_chunk(node_ptr* first, std::size_t count) {
    node* c = node_factory::allocate(count);
    c->kind = node_kind::list;
    node_ptr* kids = c->children.raw_data();
    for (std::size_t i = 0; i < count; ++i)
        new (kids + i) node_ptr(std::move(first[i]));
    finish_counts(c);
    return node_ptr(c);
}

node_ptr make_chunked(node_kind kind, std::vector<node_ptr> chunks, std::size_t size,
                      node_meta meta) {
    node* n = node_factory::allocate_chunked(chunks.size(), size);
    n->kind = kind;
    node_ptr* raw = n->children.raw_data();
    for (std::size_t i = 0; i < chunks.size(); ++i)
        new (raw + i) node_ptr(std::move(chunks[i]));
    finish_counts(n);
    n->meta = std::move(meta);
    return node_ptr(n);
}
} // namespace

node_ptr make_node(node_kind kind, node_ptr* first, std::size_t count, node_meta meta) {
    if (count > std::numeric_limits<std::uint32_t>::max())
        throw_shape("tree node", "at most 2^32 - 1 children", std::to_string(count));
    if (count > chunk_threshold) {
        std::vector<node_ptr> chunks;
        chunks.reserve((count + chunk_size - 1) / chunk_size);
        for (std::size_t at = 0; at < count; at += chunk_size)
            chunks.push_back(make_chunk(first + at, std::min(chunk_size, count - at)));
        return make_chunked(kind, std::move(chunks), count, std::move(meta));
    }
    node* n = node_factory::allocate(count);
    n->kind = kind;
    node_ptr* kids = n->children.raw_data();
    for (std::size_t i = 0; i < count; ++i)
        new (kids + i) node_ptr(std::move(first[i]));
    finish_counts(n); // after the kind: the flags depend on it
    n->meta = std::move(meta);
    return node_ptr(n);
}

node_ptr replace_children(const node& n, std::vector<std::pair<std::size_t, node_ptr>> changes) {
    if (!n.children.chunked()) {
        std::vector<node_ptr> kids(n.children.begin(), n.children.end());
        for (auto& [i, c] : changes)
            kids[i] = std::move(c);
        return make_node(n.kind, std::move(kids), n.meta);
    }
    std::sort(changes.begin(), changes.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    const node_ptr* raw = n.children.raw_data();
    std::vector<node_ptr> chunks(raw, raw + n.children.raw_size());
    for (std::size_t k = 0; k < changes.size();) {
        const std::size_t c = changes[k].first >> chunk_bits;
        const auto& old = chunks[c]->children;
        std::vector<node_ptr> items(old.begin(), old.end());
        for (; k < changes.size() && (changes[k].first >> chunk_bits) == c; ++k)
            items[changes[k].first & (chunk_size - 1)] = std::move(changes[k].second);
        chunks[c] = make_chunk(items.data(), items.size());
    }
    return make_chunked(n.kind, std::move(chunks), n.children.size(), n.meta);
}

node_ptr make_node(node_kind kind, std::vector<node_ptr> children, node_meta meta) {
    return make_node(kind, children.data(), children.size(), std::move(meta));
}

node_ptr make_leaf(leaf_value value) {
    node* n = node_factory::allocate(0);
    n->kind = node_kind::leaf;
    n->num_leaves = 1;
    n->value = std::move(value);
    const auto* a = std::get_if<array>(&n->value);
    if ((a != nullptr && is_inexact(a->dtype())) || std::holds_alternative<double>(n->value))
        n->flags = has_float;
    return node_ptr(n);
}

slab_builder::slab_builder(std::size_t nodes, std::size_t children)
    : capacity_nodes_(nodes), capacity_children_(children) {
    constexpr std::size_t header =
        (sizeof(slab) + alignof(node) - 1) / alignof(node) * alignof(node);
    void* mem = ::operator new(header + nodes * sizeof(node) + children * sizeof(node_ptr));
    slab_ = new (mem) slab{1}; // the builder's own reference
    next_node_ = reinterpret_cast<node*>(static_cast<std::byte*>(mem) + header);
    next_child_ = reinterpret_cast<node_ptr*>(next_node_ + nodes);
}

slab_builder::~slab_builder() {
    if (slab_->live.fetch_sub(1, std::memory_order_acq_rel) == 1) ::operator delete(slab_);
}

node_ptr slab_builder::make(node_kind kind, node_ptr* first, std::size_t count, node_meta meta) {
    if (capacity_nodes_ == 0 || capacity_children_ < count || count > chunk_threshold)
        return make_node(kind, first, count, std::move(meta));
    --capacity_nodes_;
    capacity_children_ -= count;
    node* n = new (next_node_++) node;
    node_factory::set_children(n, next_child_, count);
    for (std::size_t i = 0; i < count; ++i)
        new (next_child_ + i) node_ptr(std::move(first[i]));
    next_child_ += count;
    n->kind = kind;
    n->home = slab_;
    slab_->live.fetch_add(1, std::memory_order_relaxed);
    finish_counts(n);
    n->meta = std::move(meta);
    return node_ptr(n);
}

const node_ptr& none_node() {
    static const node_ptr none = make_node(node_kind::none, {}, {});
    return none;
}

std::size_t hash_meta(const node_meta& m) noexcept {
    return std::visit(
        [](const auto& p) -> std::size_t {
            using P = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<P, std::monostate>)
                return 0;
            else
                return p->hash;
        },
        m);
}

bool meta_equal(const node_meta& a, const node_meta& b) {
    if (a.index() != b.index()) return false;
    return std::visit(
        [&](const auto& pa) -> bool {
            using P = std::decay_t<decltype(pa)>;
            if constexpr (std::is_same_v<P, std::monostate>) {
                return true;
            } else {
                const auto& pb = std::get<P>(b);
                if (pa == pb) return true;
                if (pa->hash != pb->hash) return false;
                using M = typename P::element_type;
                if constexpr (std::is_same_v<M, const dict_meta>)
                    return pa->sorted_keys == pb->sorted_keys;
                else if constexpr (std::is_same_v<M, const record_meta>)
                    return pa->name == pb->name && pa->fields == pb->fields &&
                           pa->statics == pb->statics;
                else if constexpr (std::is_same_v<M, const tie_meta>)
                    return tie_meta_equal(*pa, *pb);
                else
                    return shared_meta_equal(*pa, *pb);
            }
        },
        a);
}

std::optional<path_entry> child_entry(const node_meta& meta, node_kind kind, std::size_t i) {
    switch (kind) {
    case node_kind::list:
    case node_kind::tuple:
        return index_key{i};
    case node_kind::dict:
        return dict_key{std::get<std::shared_ptr<const dict_meta>>(meta)->sorted_keys[i]};
    case node_kind::record:
        return field_key{std::get<std::shared_ptr<const record_meta>>(meta)->fields[i]};
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
        const auto& keys = std::get<std::shared_ptr<const dict_meta>>(n.meta)->sorted_keys;
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
    const auto& fields = std::get<std::shared_ptr<const record_meta>>(n.meta)->fields;
    const auto it = std::find(fields.begin(), fields.end(), f.name);
    if (it == fields.end()) return std::nullopt;
    return static_cast<std::size_t>(it - fields.begin());
}

path canonical_path(const node& root, const path& p) {
    path out;
    const node* cur = &root;
    for (std::size_t k = 0; k < p.size(); ++k) {
        while (cur->kind == node_kind::shared)
            cur = cur->children[0].get();
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
        const auto& keys = std::get<std::shared_ptr<const dict_meta>>(meta)->sorted_keys;
        std::vector<std::string> quoted;
        for (const auto& k : keys)
            quoted.push_back("'" + k + "'");
        return fmt::format("a dict with keys [{}]", fmt::join(quoted, ", "));
    }
    case node_kind::record: {
        const auto& r = *std::get<std::shared_ptr<const record_meta>>(meta);
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
        const auto& t = *std::get<std::shared_ptr<const tie_meta>>(meta);
        if (t.fn) return fmt::format("a tie to {}()", t.fn_name);
        return fmt::format("a tie to {}{}", display_path(keystr(t.source)),
                           to_string(t.transforms));
    }
    }
    return "?";
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

} // namespace detail

std::string static_value::to_string() const {
    return std::visit(
        [](const auto& x) -> std::string {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, std::string>)
                return "'" + x + "'";
            else
                return fmt::format("{}", x);
        },
        value_);
}

std::string_view kind_name(node_kind k) noexcept {
    static constexpr std::array<std::string_view, 8> names{"leaf", "None",   "list",   "tuple",
                                                           "dict", "record", "Shared", "tied"};
    return detail::name_in(names, k);
}

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
    detail::node_ptr cur = node_;
    path walked;
    for (const auto& e : p) {
        while (cur->kind == node_kind::shared)
            cur = cur->children[0];
        const auto i = detail::find_child(*cur, e);
        if (!i)
            detail::throw_path("tree::at", walked,
                               fmt::format("a node with child {}", entry_str(e)),
                               detail::describe(*cur));
        cur = cur->children[*i];
        walked.push_back(e);
    }
    return tree(std::move(cur));
}

bool tree::contains(const path& p) const noexcept {
    const detail::node* cur = node().get();
    for (const auto& e : p) {
        while (cur->kind == node_kind::shared)
            cur = cur->children[0].get();
        const auto i = detail::find_child(*cur, e);
        if (!i) return false;
        cur = cur->children[*i].get();
    }
    return true;
}

std::vector<std::string> tree::keys() const {
    const detail::node* n = node().get();
    while (n->kind == node_kind::shared)
        n = n->children[0].get();
    if (n->kind == node_kind::dict) {
        const auto& m = *std::get<std::shared_ptr<const detail::dict_meta>>(n->meta);
        std::vector<std::string> out;
        out.reserve(m.insertion.size());
        for (const auto s : m.insertion)
            out.push_back(m.sorted_keys[s]);
        return out;
    }
    if (n->kind == node_kind::record)
        return std::get<std::shared_ptr<const detail::record_meta>>(n->meta)->fields;
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
    return std::get<std::shared_ptr<const detail::record_meta>>(node()->meta)->name;
}

const std::vector<std::pair<std::string, static_value>>& tree::static_fields() const {
    static const std::vector<std::pair<std::string, static_value>> empty;
    if (kind() != node_kind::record) return empty;
    return std::get<std::shared_ptr<const detail::record_meta>>(node()->meta)->statics;
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

#include <paramtree/record.hpp>

namespace paramtree::detail {
void throw_decode(const path& p, std::string expected, const tree& found) {
    throw_structure("from_tree", p, std::move(expected), describe(found));
}
} // namespace paramtree::detail
