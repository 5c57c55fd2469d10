// paramtree — `tree`: the immutable tree value, its node kinds and constructors.
// A tree is a handle to an immutable node: a leaf (array, bool, integer, double or string),
// None, a list, a tuple, a dict (string keys), a record (a named node type with fields and
// static metadata — what a module is), or the sharing kinds (see <paramtree/shared.hpp>).
// Copying a tree is O(1); every update returns a new tree sharing all untouched subtrees.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/subscript.hpp>
#include <paramtree/path.hpp>

namespace paramtree {

/// An immutable tree of parameters.
///
/// Leaves convert implicitly, containers are built with `list`, `tuple`, `dict`, `record`:
///
///     pt::tree t = pt::dict({{"w", pt::array::zeros({3})}, {"lr", 0.1}, {"name", "mlp"}});
///     pt::tree u = t;                   // O(1): u and t are the same node
///     assert(pt::same_node(t, u) && t.num_leaves() == 3);
class tree : public detail::subscript_sugar<tree, tree> {
public:
    /// None: a node with no leaves.
    tree() noexcept;
    tree(const tree&) noexcept = default;
    tree& operator=(const tree&) noexcept = default;
    /// Moving leaves the source None (its default state), so a moved-from tree is still a
    /// valid tree: `t2 = std::move(t); t.is_none()` holds. (The source keeps a null pointer
    /// that reads as the None node: a move touches no reference count, which matters because
    /// trees are moved on every tree_map and unflatten.)
    tree(tree&& o) noexcept = default;
    tree& operator=(tree&& o) noexcept = default;
    ~tree() = default;
    tree(array a);
    tree(bool b);
    template <std::integral T>
    requires(!std::same_as<T, bool>) tree(T v)
        : tree(detail::make_leaf(static_cast<std::int64_t>(v))) {}
    tree(double v);
    tree(float v) : tree(static_cast<double>(v)) {}
    tree(std::string s);
    tree(const char* s) : tree(std::string(s)) {}

    [[nodiscard]] node_kind kind() const noexcept { return node()->kind; }
    [[nodiscard]] bool is_leaf() const noexcept { return kind() == node_kind::leaf; }
    [[nodiscard]] bool is_none() const noexcept { return kind() == node_kind::none; }
    [[nodiscard]] bool is_array() const noexcept {
        return is_leaf() && std::holds_alternative<array>(node()->value);
    }
    /// Leaves in this subtree (cached: O(1)).
    [[nodiscard]] std::size_t num_leaves() const noexcept { return node()->num_leaves; }
    /// Nodes in this subtree, itself and its leaves included (cached: O(1)).
    [[nodiscard]] std::size_t num_nodes() const noexcept { return node()->num_nodes; }
    /// Number of direct children (0 for leaves and None).
    [[nodiscard]] std::size_t size() const noexcept { return node()->children.size(); }

    /// Child `i` in storage order (for dicts: sorted key order). Throws path_error.
    [[nodiscard]] tree child(std::size_t i) const;
    /// All children in storage order.
    [[nodiscard]] std::vector<tree> children() const;
    /// Element `i` of a list or tuple (any integer type). Throws path_error if not a
    /// sequence or out of range.
    [[nodiscard]] tree operator[](std::size_t i) const;
    /// Dict entry or record field `name` (a string literal too). Throws path_error if there is
    /// none.
    [[nodiscard]] tree operator[](std::string_view name) const;
    using detail::subscript_sugar<tree, tree>::operator[];
    /// The subtree at `p`. Throws path_error naming the longest valid prefix.
    [[nodiscard]] tree at(const path& p) const;
    /// True if `p` names a node of this tree.
    [[nodiscard]] bool contains(const path& p) const noexcept;

    /// Dict keys in insertion order; record field names in declaration order.
    [[nodiscard]] std::vector<std::string> keys() const;
    /// The path entry that leads from this node to child `i` (storage order).
    [[nodiscard]] path_entry entry(std::size_t i) const;
    /// Record type name (`Linear`); empty for other kinds.
    [[nodiscard]] std::string_view record_name() const noexcept;
    /// Record static fields (`in_features=64`); empty for other kinds.
    [[nodiscard]] const std::vector<std::pair<std::string, static_value>>& static_fields() const;
    /// The static field `name` of a record. Throws path_error.
    [[nodiscard]] const static_value& static_field(std::string_view name) const;

    /// The array of an array leaf. Throws leaf_error naming what the node is instead.
    [[nodiscard]] const array& as_array() const;
    /// A scalar or string leaf: `as<double>()`, `as<std::int64_t>()`, `as<bool>()`,
    /// `as<std::string>()`. Throws leaf_error on another leaf type.
    template <class T>
    [[nodiscard]] const T& as() const {
        if (const T* p = is_leaf() ? std::get_if<T>(&node()->value) : nullptr) return *p;
        throw_not(leaf_type_name<T>());
    }
    /// The leaf value variant. Throws leaf_error if this is not a leaf.
    [[nodiscard]] const detail::leaf_value& value() const;

    /// Identity of the node: equal identities mean the same immutable node.
    [[nodiscard]] const void* identity() const noexcept { return node().get(); }

    /// Internal access for the algorithms in src/.
    explicit tree(detail::node_ptr n) noexcept : node_(std::move(n)) {}
    [[nodiscard]] const detail::node_ptr& node() const noexcept {
        return node_ ? node_ : detail::none_node();
    }
    /// Moves the node out; the tree is left None, like any moved-from tree.
    [[nodiscard]] detail::node_ptr take_node() && noexcept {
        if (node_) return std::move(node_);
        return detail::none_node(); // moved twice: a new reference to None
    }

private:
    template <class T>
    static constexpr std::string_view leaf_type_name() {
        if constexpr (std::same_as<T, bool>)
            return "a bool leaf";
        else if constexpr (std::same_as<T, std::int64_t>)
            return "an integer leaf";
        else if constexpr (std::same_as<T, double>)
            return "a double leaf";
        else if constexpr (std::same_as<T, std::string>)
            return "a string leaf";
        else
            return "an array leaf";
    }
    [[noreturn]] void throw_not(std::string_view expected) const;
    detail::node_ptr node_;
};

/// True when both trees are the same immutable node (so certainly equal).
[[nodiscard]] inline bool same_node(const tree& a, const tree& b) noexcept {
    return a.identity() == b.identity();
}

/// A list node: `[a, b]`.
[[nodiscard]] tree list(std::vector<tree> items);
/// A tuple node: `(a, b)`; tuples and lists of equal length are different structures.
[[nodiscard]] tree tuple(std::vector<tree> items);
/// A dict node with string keys. Leaves come in sorted key order (so two dicts with the same
/// keys have equal treedefs whatever their insertion order), while insertion order is kept
/// for printing, `keys()` and unflatten. Throws structure_error on a duplicate key.
[[nodiscard]] tree dict(std::vector<std::pair<std::string, tree>> items);
/// A record node `name(field=..., ...)` with static metadata that belongs to the treedef.
/// Field and static names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`), so key paths and
/// checkpoint names read back exactly; record names starting with `pt.` are reserved for
/// paramtree's own modules (`pt.nn.Linear`). Throws structure_error on a duplicate or
/// non-identifier field name and on a reserved record name.
///
///     const auto w = pt::array::zeros({32, 64}), b = pt::array::zeros({32});
///     auto lin = pt::record("Linear", {{"weight", w}, {"bias", b}}, {{"in_features", 64}});
[[nodiscard]] tree record(std::string name, std::vector<std::pair<std::string, tree>> fields,
                          std::vector<std::pair<std::string, static_value>> statics = {});
namespace detail {
/// Record names of paramtree's own modules start with this; `record` refuses it, so a user
/// record can never be mistaken for a built-in module.
inline constexpr std::string_view reserved_record_prefix = "pt.";
/// `record` without the reserved-name check: for paramtree's modules and the checkpoint
/// decoder (which restores them).
[[nodiscard]] tree reserved_record(std::string name,
                                   std::vector<std::pair<std::string, tree>> fields,
                                   std::vector<std::pair<std::string, static_value>> statics = {});
} // namespace detail

/// None.
[[nodiscard]] inline tree none() {
    return tree{};
}

/// Short description of what a node is, for messages: `a list of length 3`, `f32[3]`.
[[nodiscard]] std::string describe(const tree& t);

} // namespace paramtree
