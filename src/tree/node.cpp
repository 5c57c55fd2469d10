// paramtree — tree nodes (see <paramtree/detail/node.hpp>): one allocation per node with its
// children, chunked wide nodes, slabs, iterative destruction, metadata hashing and equality.
#include <paramtree/detail/enum_names.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/sharing.hpp>
#include <paramtree/treedef.hpp>

#include <algorithm>
#include <array>
#include <string_view>
#include <limits>
#include <numeric>

namespace paramtree::detail {

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

void throw_meta_mismatch(std::size_t found, const char* file, int line) {
    static constexpr std::array<std::string_view, 5> names{
        "no metadata", "dict metadata", "record metadata", "Shared metadata", "tie metadata"};
    throw_internal("node metadata of the kind the node's kind implies",
                   std::string(name_in(names, found)), file, line);
}

} // namespace paramtree::detail
