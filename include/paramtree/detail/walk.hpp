// paramtree — internal: helpers shared by the tree algorithms.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <paramtree/detail/node.hpp>
#include <paramtree/path.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree::detail {

[[nodiscard]] inline std::size_t mix(std::size_t h, std::size_t v) noexcept {
    return h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
}

/// Moves `cur`, the path of an explicit-stack pre-order walk, to an item whose parent is at
/// `parent_depth` and which is reached from it by `entry` (none for a Shared node's child).
inline void move_to(path& cur, std::size_t parent_depth, const std::optional<path_entry>& entry) {
    while (cur.size() > parent_depth)
        cur.pop_back();
    if (entry) cur.push_back(*entry);
}

struct difference {
    path where;
    std::string left;
    std::string right;
    node_kind left_kind;
    node_kind right_kind;
};
/// The first place (pre-order) where two structures differ, or nullopt if they are equal.
[[nodiscard]] std::optional<difference> first_difference(const treedef& a, const treedef& b);
/// Throws structure_error "`context`: structure mismatch" at the first place where `found`
/// (the structure of tree `k`) differs from `expected` (that of tree 0).
[[noreturn]] void throw_structure_mismatch(std::string_view context, const treedef& expected,
                                           const treedef& found, std::size_t k);
/// The same with the trees' roles named (`grads`, `params`, `state.mu`). When one side holds a
/// tie or Shared node and the other does not, the message says what that usually means.
[[noreturn]] void throw_structure_mismatch(std::string_view context, const treedef& expected,
                                           const treedef& found, std::string_view expected_name,
                                           std::string_view found_name);
/// The structure of a subtree of `t` as a standalone treedef (nodes [first, last]).
[[nodiscard]] treedef slice(const treedef& t, std::size_t last);
/// Builds a treedef block from post-order nodes, computing the hash.
[[nodiscard]] treedef make_treedef(std::vector<treedef_node> nodes);

/// The path entry from `n` to its child `i`; nullopt for a Shared node (paths skip it).
[[nodiscard]] std::optional<path_entry> child_entry(const node_meta& meta, node_kind kind,
                                                    std::size_t i);
/// The entry a name selects below `n` (Shared nodes skipped): a record field, else a dict key.
[[nodiscard]] path_entry name_entry(const node& n, std::string_view name);
/// Index of the child reached by `e`, or nullopt if `n` has no such child. A field or index
/// entry also finds a dict key of the same spelling (dotted names are ambiguous).
[[nodiscard]] std::optional<std::size_t> find_child(const node& n, const path_entry& e);
/// `p` with every entry spelled as the tree spells it (a field entry that found a dict key
/// becomes that dict key), Shared nodes passed; entries past a failing step are kept as written.
[[nodiscard]] path canonical_path(const node& root, const path& p);
/// `a list of length 3`, `a dict with keys ['a', 'b']`, `a Linear record with fields (w, b)`.
[[nodiscard]] std::string describe_node(node_kind kind, std::size_t arity, const node_meta& meta);
/// For leaves: `f32[3]`, `the integer 3`, `the string 'x'`.
/// How `describe_leaf` words a leaf: for an error message (`the integer 3`, `the string
/// 'a'`) or as the printer shows it (`3`, `'a'`). Arrays are `f32[2,3]` either way.
enum class leaf_style { message, print };
[[nodiscard]] std::string describe_leaf(const leaf_value& v,
                                        leaf_style style = leaf_style::message);
/// How a node is spelled by both printers (treedef::to_string and print): the text that opens
/// and closes it, each child's label in display order with its child index (`'key': `,
/// `field=`, or empty), a record's static fields (`heads=8`), and whether it is a one-element
/// tuple (`(x,)`). None and ties are atoms (`open` only); leaves are the caller's to spell
/// (`*` in a treedef, the value in a printed tree).
struct node_syntax {
    std::string open, close;
    std::vector<std::pair<std::size_t, std::string>> children;
    std::vector<std::string> statics;
    bool single_tuple = false;
    bool atom = false; // None or a tie: nothing inside
};
[[nodiscard]] node_syntax syntax_of(node_kind kind, const node_meta& meta, std::size_t arity);

/// What `n` is, for messages.
[[nodiscard]] std::string describe(const node& n);
/// Same kind, arity and metadata: the one-level structure check shared by all algorithms.
[[nodiscard]] bool same_level(const treedef_node& a, const treedef_node& b);
[[nodiscard]] bool same_level(const node& n, const treedef_node& d);

/// Children indices (post-order positions) of the treedef node at `index`, in order.
[[nodiscard]] std::vector<std::size_t> child_positions(const std::vector<treedef_node>& nodes,
                                                       std::size_t index);

/// A `descend` predicate for rebuild: subtrees whose cached flags contain `flag`.
[[nodiscard]] inline auto flag_is(std::uint8_t flag) {
    return [flag](const node& n) { return (n.flags & flag) != 0; };
}

// Post-order rebuild of the subtrees for which `descend` holds; `visit` sees each such node
// after its children were rebuilt and returns it or its replacement. Untouched subtrees are
// shared; iterative, so depth is not limited by the stack.
template <class Descend, class Visit>
node_ptr rebuild(const node_ptr& root, Descend&& descend, Visit&& visit) {
    if (!descend(*root)) return root;
    struct frame {
        node_ptr n;
        std::size_t next = 0;
        std::vector<std::pair<std::size_t, node_ptr>> changes; // (child index, new child)
    };
    std::vector<frame> stack;
    stack.push_back({root, 0, {}});
    node_ptr result;
    while (!stack.empty()) {
        frame& f = stack.back();
        if (f.next < f.n->children.size()) {
            const node_ptr& c = f.n->children[f.next++];
            if (descend(*c)) stack.push_back({c, 0, {}});
            continue;
        }
        // Only the changed children are replaced: a wide node copies its touched chunks only.
        node_ptr built = f.changes.empty() ? f.n : replace_children(*f.n, std::move(f.changes));
        node_ptr out = visit(built);
        stack.pop_back();
        if (stack.empty()) {
            result = std::move(out);
        } else {
            frame& p = stack.back();
            if (out.get() != p.n->children[p.next - 1].get())
                p.changes.emplace_back(p.next - 1, std::move(out));
        }
    }
    return result;
}

} // namespace paramtree::detail
