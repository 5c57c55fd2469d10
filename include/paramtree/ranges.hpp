// paramtree — trees as ranges: lazy views over leaves, paths and nodes that compose with
// range-v3 (and std::ranges) pipelines.
//
//     namespace pv = pt::views;
//     auto n = ranges::accumulate(pv::float_arrays(model) |
//     ranges::views::transform(&pt::array::size),
//                                 std::size_t{0});
//
// A view holds its tree (one reference, taken when the view is made), so it stays valid
// whatever happens to the variable it was made from: trees are immutable and nothing can
// invalidate an iterator. Iteration is the library's iterative pre-order walk with the stack
// kept inside the iterator (inline for the first 16 levels), so a 1,000,000-deep chain
// iterates, and no element costs an allocation or a reference count. Like `flatten`, the views
// see a tree with ties **pruned**: a tied position has no leaf of its own and a tied value
// appears once, at its source; `leaves_expanded` visits the tied positions too.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include <range/v3/range/concepts.hpp>
#include <range/v3/view/interface.hpp>
#include <range/v3/view/zip.hpp>

#include <paramtree/array.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

namespace detail {

/// A stack whose first N entries live inside it: iterators that walk ordinary trees never
/// allocate, and deep ones still work.
template <class T, std::size_t N>
class small_stack {
public:
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] T& back() noexcept { return size_ <= N ? inline_[size_ - 1] : heap_.back(); }
    [[nodiscard]] const T& back() const noexcept {
        return size_ <= N ? inline_[size_ - 1] : heap_.back();
    }
    void push_back(const T& v) {
        if (size_ < N)
            inline_[size_] = v;
        else
            heap_.push_back(v);
        ++size_;
    }
    void pop_back() noexcept {
        if (size_ > N) heap_.pop_back();
        --size_;
    }

private:
    std::array<T, N> inline_{};
    std::vector<T> heap_;
    std::size_t size_ = 0;
};

/// Pre-order over the nodes of a subtree, one step per call: the walk every view uses.
/// With `LeavesOnly`, it stops at leaves only and skips subtrees without leaves (None, empty
/// containers, tie placeholders) without entering them; otherwise it stops at every node.
/// With `Paths`, it keeps the key path of the current node, changed one entry at a time
/// (unless constructed with `keep_paths` false: the node view keeps paths only for trees with
/// Shared nodes, where a node may need its path to resolve ties).
///
/// The walk knows its scope: `scope()` is the innermost Shared node strictly above the
/// current node (nullptr outside every Shared node), the one the placeholders below the
/// current node are read from (a placeholder belongs to its innermost Shared node), and
/// `scope_path_size()` the length of the path to it. It is kept per frame, so it costs
/// nothing per step beyond a copy.
template <bool LeavesOnly, bool Paths>
class preorder_walk {
public:
    preorder_walk() = default;
    explicit preorder_walk(const node* root, bool keep_paths = Paths) : keep_paths_(keep_paths) {
        if (root == nullptr) return;
        if (LeavesOnly && root->kind != node_kind::leaf && root->num_leaves == 0) return;
        current_ = root;
        if (LeavesOnly && root->kind != node_kind::leaf) {
            stack_.push_back(frame_of(root));
            advance();
        }
    }
    [[nodiscard]] const node* current() const noexcept { return current_; }
    [[nodiscard]] const path& current_path() const noexcept { return path_; }
    [[nodiscard]] std::size_t depth() const noexcept { return depth_; }
    [[nodiscard]] std::size_t ordinal() const noexcept { return ordinal_; }
    [[nodiscard]] const node* scope() const noexcept { return scope_; }
    [[nodiscard]] std::size_t scope_path_size() const noexcept { return scope_path_size_; }

    void advance() {
        ++ordinal_;
        if (!LeavesOnly && current_ != nullptr && !current_->children.empty())
            stack_.push_back(frame_of(current_));
        while (!stack_.empty()) {
            frame& f = stack_.back();
            if (f.next == f.n->children.size()) {
                stack_.pop_back();
                continue;
            }
            const std::size_t i = f.next++;
            const node* c = f.n->children[i].get();
            if (LeavesOnly && c->kind != node_kind::leaf && c->num_leaves == 0) continue;
            if (Paths && keep_paths_) {
                while (path_.size() > f.path_size)
                    path_.pop_back();
                if (auto e = child_entry(f.n->meta, f.n->kind, i)) path_.push_back(std::move(*e));
            }
            depth_ = stack_.size();
            scope_ = f.scope;
            scope_path_size_ = f.scope_path_size;
            if (LeavesOnly && c->kind != node_kind::leaf) {
                if (f.next == f.n->children.size())
                    f = frame_of(c); // the last child takes over the frame: chains need no
                else                 // stack (as flatten)
                    stack_.push_back(frame_of(c));
                continue;
            }
            current_ = c;
            return;
        }
        current_ = nullptr;
    }

private:
    struct frame {
        const node* n = nullptr;
        std::size_t next = 0;
        std::size_t path_size = 0;       // the path's length at this node
        const node* scope = nullptr;     // the innermost Shared node at or above this node
        std::size_t scope_path_size = 0; // the path's length at that Shared node
    };
    // The frame of a node about to be entered: the node is the scope of its children if it is
    // a Shared node, else they inherit the current one.
    [[nodiscard]] frame frame_of(const node* n) const noexcept {
        const std::size_t here = Paths ? path_.size() : 0;
        if (n->kind == node_kind::shared) return {n, 0, here, n, here};
        return {n, 0, here, scope_, scope_path_size_};
    }
    small_stack<frame, 16> stack_;
    const node* current_ = nullptr;
    path path_;
    std::size_t depth_ = 0;
    std::size_t ordinal_ = 0;
    const node* scope_ = nullptr;
    std::size_t scope_path_size_ = 0;
    bool keep_paths_ = Paths;
};

} // namespace detail

namespace views {

/// A leaf seen through a view: no reference count of its own, valid while the view's tree
/// lives. `get()` makes an owning `tree` of it.
class leaf_ref {
public:
    leaf_ref() = default;
    explicit leaf_ref(const detail::node* n) noexcept : n_(n) {}
    [[nodiscard]] bool is_array() const noexcept {
        return std::holds_alternative<array>(n_->value);
    }
    /// The array of an array leaf; throws leaf_error (naming what it is) otherwise.
    [[nodiscard]] const array& as_array() const;
    /// The leaf's value (array, bool, integer, double, string or None).
    [[nodiscard]] const detail::leaf_value& value() const noexcept { return n_->value; }
    /// An owning tree of this leaf (one reference count).
    [[nodiscard]] tree get() const;
    [[nodiscard]] friend bool operator==(leaf_ref a, leaf_ref b) noexcept { return a.n_ == b.n_; }

private:
    const detail::node* n_ = nullptr;
};

/// A node seen through `views::nodes`: its kind, depth (the root is 0), number of direct
/// children and of leaves below it; `get()` makes an owning tree of it.
///
/// A node inside a Shared node may hold tie placeholders whose sources lie outside it; its
/// `get()` is then the self-contained sub-model `tree::at` gives (ties to outside
/// materialised, inner ties kept), never a tree with dangling placeholders. The node
/// remembers its Shared node and its path from there only in that case.
class node_ref {
public:
    node_ref() = default;
    node_ref(const detail::node* n, std::size_t depth) noexcept : n_(n), depth_(depth) {}
    node_ref(const detail::node* n, std::size_t depth, const detail::node* scope, path from_scope)
        : n_(n), depth_(depth), scope_(scope), from_scope_(std::move(from_scope)) {}
    [[nodiscard]] node_kind kind() const noexcept { return n_->kind; }
    [[nodiscard]] std::size_t depth() const noexcept { return depth_; }
    [[nodiscard]] std::size_t size() const noexcept { return n_->children.size(); }
    [[nodiscard]] std::size_t num_leaves() const noexcept { return n_->num_leaves; }
    /// The record's name for a record node, empty otherwise (no tree is made).
    [[nodiscard]] std::string_view record_name() const noexcept;
    [[nodiscard]] tree get() const;
    /// `a list of length 3`, `f32[4]`, `a tie to ['w']`: what the node is, for messages.
    [[nodiscard]] std::string describe() const;

private:
    const detail::node* n_ = nullptr;
    std::size_t depth_ = 0;
    const detail::node* scope_ = nullptr; // set only when `get()` has ties to resolve
    path from_scope_;
};

/// One element of `leaves_with_path`: the key path (valid until the iterator moves on; copy
/// it to keep it) and the leaf.
struct path_and_leaf {
    const path& where;
    leaf_ref leaf;
};

/// What a leaf view yields and which leaves it keeps.
enum class leaf_filter : std::uint8_t { all, arrays, float_arrays };

namespace detail_views {

template <leaf_filter F>
[[nodiscard]] inline bool keep(const detail::node* n) noexcept {
    if constexpr (F == leaf_filter::all) {
        return true;
    } else {
        const auto* a = std::get_if<array>(&n->value);
        return a != nullptr && (F == leaf_filter::arrays || is_inexact(a->dtype()));
    }
}

/// What both walk iterators share: postfix increment, equality (the same node at the same
/// position of the walk) and the default sentinel (the walk is over). `D` provides prefix
/// increment and `walk()`.
template <class D>
class walk_iterator_ops {
public:
    D operator++(int) {
        D old = self();
        ++self();
        return old;
    }
    [[nodiscard]] friend bool operator==(const D& a, const D& b) noexcept {
        return a.walk().current() == b.walk().current() && a.walk().ordinal() == b.walk().ordinal();
    }
    [[nodiscard]] friend bool operator==(const D& a, std::default_sentinel_t) noexcept {
        return a.walk().current() == nullptr;
    }

private:
    [[nodiscard]] D& self() noexcept { return static_cast<D&>(*this); }
};

/// The iterator of every leaf view: forward, with a default sentinel at the end.
template <leaf_filter F, bool Paths>
class leaf_iterator : public walk_iterator_ops<leaf_iterator<F, Paths>> {
public:
    using difference_type = std::ptrdiff_t;
    using value_type =
        std::conditional_t<Paths, path_and_leaf,
                           std::conditional_t<F == leaf_filter::all, leaf_ref, array>>;
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag; // operator* may return a proxy

    leaf_iterator() = default;
    explicit leaf_iterator(const detail::node* root) : walk_(root) { skip(); }

    [[nodiscard]] decltype(auto) operator*() const {
        const detail::node* n = walk_.current();
        if constexpr (Paths)
            return path_and_leaf{walk_.current_path(), leaf_ref(n)};
        else if constexpr (F == leaf_filter::all)
            return leaf_ref(n);
        else
            return static_cast<const array&>(std::get<array>(n->value));
    }
    leaf_iterator& operator++() {
        walk_.advance();
        skip();
        return *this;
    }
    using walk_iterator_ops<leaf_iterator>::operator++;
    [[nodiscard]] const detail::preorder_walk<true, Paths>& walk() const noexcept { return walk_; }

private:
    void skip() {
        while (walk_.current() != nullptr && !keep<F>(walk_.current()))
            walk_.advance();
    }
    detail::preorder_walk<true, Paths> walk_;
};

class node_iterator : public walk_iterator_ops<node_iterator> {
public:
    using difference_type = std::ptrdiff_t;
    using value_type = node_ref;
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;

    node_iterator() = default;
    explicit node_iterator(const detail::node* root)
        : walk_(root, root != nullptr && (root->flags & detail::has_shared) != 0) {}
    [[nodiscard]] node_ref operator*() const {
        const detail::node* n = walk_.current();
        // A node below a Shared node with placeholders below it: get() must resolve them.
        if (walk_.scope() != nullptr && (n->flags & detail::has_tied) != 0)
            return node_ref(n, walk_.depth(), walk_.scope(),
                            walk_.current_path().suffix(walk_.scope_path_size()));
        return node_ref(n, walk_.depth());
    }
    node_iterator& operator++() {
        walk_.advance();
        return *this;
    }
    using walk_iterator_ops<node_iterator>::operator++;
    [[nodiscard]] const detail::preorder_walk<false, true>& walk() const noexcept { return walk_; }

private:
    detail::preorder_walk<false, true> walk_; // paths kept only for trees with Shared nodes
};

/// A view holding its tree: begin() starts a walk, end() is the default sentinel.
template <class Iterator>
class tree_view : public ranges::view_base, public std::ranges::view_base {
public:
    tree_view() = default;
    explicit tree_view(tree t) : tree_(std::move(t)) {}
    [[nodiscard]] Iterator begin() const { return Iterator(tree_.node().get()); }
    [[nodiscard]] std::default_sentinel_t end() const noexcept { return {}; }
    /// The tree the view walks.
    [[nodiscard]] const tree& base() const noexcept { return tree_; }

private:
    tree tree_;
};

} // namespace detail_views

/// The leaves of `t` in flatten order (pre-order, dict keys sorted), ties pruned.
///
///     std::size_t arrays = 0;
///     for (pt::views::leaf_ref l : pt::views::leaves(model)) arrays += l.is_array() ? 1 : 0;
///     assert(arrays == 4);
using leaves_view = detail_views::tree_view<detail_views::leaf_iterator<leaf_filter::all, false>>;
[[nodiscard]] leaves_view leaves(tree t);

/// Each leaf with its key path; the path is extended and shortened as the walk moves (never
/// rebuilt per leaf).
///
///     for (auto [where, leaf] : pt::views::leaves_with_path(model))
///         std::cout << pt::keystr(where) << "\n";   // .linear1.weight, .linear1.bias, ...
using leaves_with_path_view =
    detail_views::tree_view<detail_views::leaf_iterator<leaf_filter::all, true>>;
[[nodiscard]] leaves_with_path_view leaves_with_path(tree t);

/// The array leaves as `const pt::array&` (other leaves skipped).
using arrays_view =
    detail_views::tree_view<detail_views::leaf_iterator<leaf_filter::arrays, false>>;
[[nodiscard]] arrays_view arrays(tree t);

/// The float32/float64 array leaves as `const pt::array&`: the trainable parameters.
///
///     std::size_t n = 0;
///     for (const pt::array& w : pt::views::float_arrays(model)) n += w.size();
///     assert(n == 40); // model: two Linear(4 -> 4), each 16 weights and 4 biases
using float_arrays_view =
    detail_views::tree_view<detail_views::leaf_iterator<leaf_filter::float_arrays, false>>;
[[nodiscard]] float_arrays_view float_arrays(tree t);

/// Every node of `t` in pre-order (containers, leaves, None, Shared nodes and tie
/// placeholders), each with its kind and depth: for structure tools.
using nodes_view = detail_views::tree_view<detail_views::node_iterator>;
[[nodiscard]] nodes_view nodes(tree t);

/// The leaves of `expand(t)`: tied positions are visited too, each holding its source's
/// (transformed) value.
[[nodiscard]] leaves_view leaves_expanded(const tree& t);

namespace detail_views {
/// Throws structure_error naming the first path where `trees[k]` differs from `trees[0]`.
void check_same_structure(std::initializer_list<const tree*> trees);
} // namespace detail_views

/// The leaves of several trees of one structure side by side, as tuples of `leaf_ref`:
/// parameters next to their gradients and optimizer moments. Throws structure_error naming
/// the first differing path if the structures differ.
///
///     double dot = 0;
///     for (auto [p, g] : pt::views::zip_leaves(params, grads))
///         dot += pt::sum(p.as_array() * g.as_array()).item();
///     assert(dot > 0); // grads = params / 2 here
template <class... Trees>
requires(sizeof...(Trees) >= 1 && (std::same_as<std::remove_cvref_t<Trees>, tree> && ...))
    [[nodiscard]] auto zip_leaves(const Trees&... ts) {
    detail_views::check_same_structure({&ts...});
    return ranges::views::zip(views::leaves(ts)...);
}

} // namespace views

} // namespace paramtree
