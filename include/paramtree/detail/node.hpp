// paramtree — internal: the immutable, intrusively reference-counted tree node.
// A node is built once and never changed; copying a tree copies a pointer. Nodes cache their
// leaf and node counts at construction, and lazily the treedef of the subtree they root, so
// flattening a tree twice yields one shared treedef (O(1) equality) and skips the rebuild.
#pragma once

#include <atomic>
#include <iterator>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/leaf_value.hpp>
#include <paramtree/node_kind.hpp>
#include <paramtree/static_value.hpp>

namespace paramtree {

namespace detail {

struct dict_meta {
    std::vector<std::string> sorted_keys; // children are stored in this order
    std::vector<std::uint32_t> insertion; // insertion[i] = sorted index of the i-th key
    std::size_t hash = 0;                 // of the sorted keys only
};

struct record_meta {
    std::string name;
    std::vector<std::string> fields; // children, in declaration order
    std::vector<std::pair<std::string, static_value>> statics;
    std::size_t hash = 0;
};

struct shared_meta; // <paramtree/detail/sharing.hpp>
struct tie_meta;

using node_meta = std::variant<std::monostate, std::shared_ptr<const dict_meta>,
                               std::shared_ptr<const record_meta>,
                               std::shared_ptr<const shared_meta>, std::shared_ptr<const tie_meta>>;

using paramtree::leaf_value; // <paramtree/leaf_value.hpp>

struct treedef_impl;
struct node;

void destroy(const node* n) noexcept;

/// Throws internal_error: a node's metadata (alternative `found` of node_meta) is not the
/// kind its caller at `file`:`line` needed.
[[noreturn]] void throw_meta_mismatch(std::size_t found, const char* file, int line);

/// Intrusive owning pointer to an immutable node.
class node_ptr {
public:
    node_ptr() noexcept = default;
    explicit node_ptr(const node* n) noexcept; // adopts one reference
    /// A new reference to `n`, which someone else keeps alive meanwhile.
    [[nodiscard]] static node_ptr share(const node* n) noexcept;
    node_ptr(const node_ptr& o) noexcept;
    node_ptr(node_ptr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    node_ptr& operator=(node_ptr o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    ~node_ptr();

    [[nodiscard]] const node* get() const noexcept { return p_; }
    [[nodiscard]] const node* operator->() const noexcept { return p_; }
    [[nodiscard]] const node& operator*() const noexcept { return *p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    /// Gives up ownership without releasing (for iterative destruction).
    [[nodiscard]] const node* detach() noexcept { return std::exchange(p_, nullptr); }

private:
    const node* p_ = nullptr;
};

/// Cached facts about a subtree, so that sharing code only walks paths that lead to ties.
inline constexpr std::uint8_t has_shared = 1; // a Shared node in this subtree
inline constexpr std::uint8_t has_tied = 2;   // a tied placeholder in this subtree
inline constexpr std::uint8_t has_float = 4;  // a float array or double leaf (may hold NaN)

/// Wide nodes keep their children in immutable chunks of `chunk_size`, each a hidden node
/// of its own: replacing one child of a 1,000-wide list then copies the chunk table and one
/// chunk (about 64 references) instead of 1,000 references.
inline constexpr std::size_t chunk_bits = 5;
inline constexpr std::size_t chunk_size = std::size_t{1} << chunk_bits;
inline constexpr std::size_t chunk_threshold = 2 * chunk_size; // chunk above this width

/// A node's children, stored right after the node (or in its slab): either the children
/// themselves or, for wide nodes, the chunks that hold them.
class child_array {
public:
    class iterator {
    public:
        using value_type = node_ptr;
        using difference_type = std::ptrdiff_t;
        using reference = const node_ptr&;
        using pointer = const node_ptr*;
        using iterator_category = std::forward_iterator_tag;
        iterator() = default;
        iterator(const child_array* a, std::size_t i) : a_(a), i_(i) {}
        reference operator*() const { return (*a_)[i_]; }
        pointer operator->() const { return &(*a_)[i_]; }
        iterator& operator++() {
            ++i_;
            return *this;
        }
        iterator operator++(int) {
            auto old = *this;
            ++i_;
            return old;
        }
        bool operator==(const iterator& o) const { return i_ == o.i_; }

    private:
        const child_array* a_ = nullptr;
        std::size_t i_ = 0;
    };

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] inline const node_ptr& operator[](std::size_t i) const noexcept;
    [[nodiscard]] iterator begin() const noexcept { return {this, 0}; }
    [[nodiscard]] iterator end() const noexcept { return {this, size_}; }
    [[nodiscard]] bool chunked() const noexcept { return raw_size_ != size_; }
    /// The stored entries: the children, or the chunks of a chunked node.
    [[nodiscard]] node_ptr* raw_data() const noexcept { return data_; }
    [[nodiscard]] std::size_t raw_size() const noexcept { return raw_size_; }

private:
    friend struct node_factory;
    node_ptr* data_ = nullptr;
    std::uint32_t size_ = 0;     // children
    std::uint32_t raw_size_ = 0; // stored entries: fewer than size_ exactly when chunked
};

/// Several nodes built together (by unflatten) share one allocation, freed with the last.
struct slab {
    std::atomic<std::size_t> live;
};

/// A write-once, lock-free slot for the treedef of a subtree. The first store wins; later
/// stores are dropped (they hold an equal structure). Readers copy a shared_ptr that never
/// changes after publication, which needs no lock.
class def_cache {
public:
    def_cache() = default;
    def_cache(const def_cache&) = delete;
    def_cache& operator=(const def_cache&) = delete;
    ~def_cache() { delete slot_.load(std::memory_order_acquire); }

    [[nodiscard]] std::shared_ptr<const treedef_impl> load() const noexcept {
        const auto* p = slot_.load(std::memory_order_acquire);
        return p != nullptr ? *p : nullptr;
    }
    void store(std::shared_ptr<const treedef_impl> def) const {
        if (slot_.load(std::memory_order_acquire) != nullptr) return;
        auto* box = new std::shared_ptr<const treedef_impl>(std::move(def));
        const std::shared_ptr<const treedef_impl>* expected = nullptr;
        if (!slot_.compare_exchange_strong(expected, box, std::memory_order_acq_rel)) delete box;
    }

private:
    mutable std::atomic<const std::shared_ptr<const treedef_impl>*> slot_{nullptr};
};

struct node {
    mutable std::atomic<std::size_t> refs{1};
    node_kind kind = node_kind::none;
    std::uint8_t flags = 0;     // has_shared | has_tied | has_float, for this subtree (cached)
    slab* home = nullptr;       // the slab this node lives in, or null if allocated alone
    std::size_t num_leaves = 0; // leaves in this subtree
    std::size_t num_nodes = 1;  // nodes in this subtree, itself included
    child_array children;
    node_meta meta;
    leaf_value value; // only meaningful for kind == leaf
    /// The treedef of this subtree once somebody flattened it (or built it by unflatten).
    mutable def_cache cached_def;
};

inline const node_ptr& child_array::operator[](std::size_t i) const noexcept {
    if (raw_size_ == size_) return data_[i];
    return data_[i >> chunk_bits]->children.data_[i & (chunk_size - 1)];
}

inline node_ptr::node_ptr(const node* n) noexcept : p_(n) {}
inline node_ptr node_ptr::share(const node* n) noexcept {
    if (n != nullptr) n->refs.fetch_add(1, std::memory_order_relaxed);
    return node_ptr(n);
}
inline node_ptr::node_ptr(const node_ptr& o) noexcept : p_(o.p_) {
    if (p_ != nullptr) p_->refs.fetch_add(1, std::memory_order_relaxed);
}
inline node_ptr::~node_ptr() {
    if (p_ != nullptr && p_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(p_);
}

/// A new interior node; counts are derived from the children.
[[nodiscard]] node_ptr make_node(node_kind kind, std::vector<node_ptr> children, node_meta meta);
/// As make_node, moving the children out of `[first, first + n)`.
[[nodiscard]] node_ptr make_node(node_kind kind, node_ptr* first, std::size_t n, node_meta meta);
/// A copy of `n` with some children replaced (`changes`: child index, new child). For a
/// chunked node only the touched chunks are copied: O(width / chunk_size + changes).
[[nodiscard]] node_ptr replace_children(const node& n,
                                        std::vector<std::pair<std::size_t, node_ptr>> changes);
/// Builds many interior nodes (unflatten's) in one allocation: the memory is released when
/// the builder and every node built in it are gone. Beyond the reserved capacity it falls
/// back to make_node.
class slab_builder {
public:
    slab_builder(std::size_t nodes, std::size_t children);
    slab_builder(const slab_builder&) = delete;
    slab_builder& operator=(const slab_builder&) = delete;
    ~slab_builder();
    [[nodiscard]] node_ptr make(node_kind kind, node_ptr* first, std::size_t count, node_meta meta);

private:
    slab* slab_;
    node* next_node_;
    node_ptr* next_child_;
    std::size_t capacity_nodes_;
    std::size_t capacity_children_;
};

/// A new leaf node.
[[nodiscard]] node_ptr make_leaf(leaf_value value);
/// The shared None node.
[[nodiscard]] const node_ptr& none_node();

/// The metadata of type M (dict_meta, record_meta, shared_meta, tie_meta) that a node of the
/// matching kind carries. Metadata of another type breaks an invariant of the library: an
/// internal_error naming the caller's file and line, not `bad_variant_access` or UB.
// The caller's file and line come from __builtin_FILE/__builtin_LINE default arguments:
// std::source_location would do, but clang 14 with libstdc++ 12 does not have it.
template <class M>
[[nodiscard]] const M& meta_of(const node_meta& meta, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    if (const auto* p = std::get_if<std::shared_ptr<const M>>(&meta); p && *p) return **p;
    throw_meta_mismatch(meta.index(), file, line);
}
template <class M>
[[nodiscard]] const M& meta_of(const node& n, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    return meta_of<M>(n.meta, file, line);
}

[[nodiscard]] std::size_t hash_meta(const node_meta& m) noexcept;
[[nodiscard]] bool meta_equal(const node_meta& a, const node_meta& b);

} // namespace detail
} // namespace paramtree
