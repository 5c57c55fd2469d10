// paramtree — pretty printing. The tree is first laid out into a pre-order list of items
// (label, opening and closing text, children), then inline widths are computed bottom-up
// and the text is emitted with an explicit stack.
#include <paramtree/detail/sharing.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/print.hpp>
#include <paramtree/ranges.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <ostream>
#include <variant>

#include <fmt/format.h>

namespace paramtree {

namespace {

struct item {
    std::string label; // `'key': ` or `field=`
    std::string open;  // the whole text for atoms
    std::string close;
    std::vector<std::size_t> children; // item indices, display order
    std::vector<std::string> extras;   // record static fields, printed after the children
    bool atom = true;
    bool single_tuple = false;
    std::size_t inline_width = 0;
};

/// Each item's width on one line, bottom-up (children come after their parent).
void measure(std::vector<item>& items) {
    constexpr std::size_t cap = static_cast<std::size_t>(1) << 40;
    for (std::size_t i = items.size(); i-- > 0;) {
        auto& it = items[i];
        std::size_t w = it.label.size() + it.open.size();
        if (!it.atom) {
            const std::size_t parts = it.children.size() + it.extras.size();
            for (const auto c : it.children)
                w += items[c].inline_width;
            for (const auto& e : it.extras)
                w += e.size();
            w += parts > 0 ? 2 * (parts - 1) : 0;
            w += it.close.size() + (it.single_tuple ? 1 : 0);
        }
        it.inline_width = std::min(w, cap);
    }
}

std::vector<item> layout(const tree& t) {
    std::vector<item> items;
    struct pending {
        const detail::node* n;
        std::string label;
        std::size_t parent; // npos for the root
    };
    constexpr auto npos = static_cast<std::size_t>(-1);
    std::vector<pending> stack{{t.node().get(), "", npos}};
    while (!stack.empty()) {
        pending td = std::move(stack.back());
        stack.pop_back();
        const auto& n = *td.n;
        const std::size_t id = items.size();
        items.emplace_back();
        item& it = items.back();
        it.label = std::move(td.label);
        if (td.parent != npos) items[td.parent].children.push_back(id);
        std::vector<std::pair<std::size_t, std::string>> kids; // child index, label
        if (n.kind == node_kind::leaf) {
            it.open = detail::describe_leaf(n.value, detail::leaf_style::print);
        } else {
            // The spelling treedef::to_string uses too (detail::syntax_of), laid out here.
            detail::node_syntax syn = detail::syntax_of(n.kind, n.meta, n.children.size());
            it.atom = syn.atom;
            it.open = std::move(syn.open);
            it.close = std::move(syn.close);
            it.single_tuple = syn.single_tuple;
            kids = std::move(syn.children);
            it.extras = std::move(syn.statics);
        }
        if (!it.atom && kids.empty() && it.extras.empty()) it.atom = true, it.open += it.close;
        for (std::size_t k = kids.size(); k-- > 0;)
            stack.push_back({n.children[kids[k].first].get(), std::move(kids[k].second), id});
    }
    // Children were appended in pop order, which is display order.
    measure(items);
    return items;
}

// Emits item `root` on one line (iteratively).
void emit_inline(const std::vector<item>& items, std::size_t root, std::string& out) {
    using action = std::variant<std::size_t, const std::string*>;
    static const std::string comma = ", ";
    static const std::string trailing = ",";
    std::vector<action> stack{root};
    while (!stack.empty()) {
        const action a = stack.back();
        stack.pop_back();
        if (const auto* s = std::get_if<const std::string*>(&a)) {
            out += **s;
            continue;
        }
        const auto& it = items[std::get<std::size_t>(a)];
        out += it.label;
        out += it.open;
        if (it.atom) continue;
        stack.push_back(&it.close);
        if (it.single_tuple) stack.push_back(&trailing);
        for (std::size_t k = it.extras.size(); k-- > 0;) {
            stack.push_back(&it.extras[k]);
            if (k > 0 || !it.children.empty()) stack.push_back(&comma);
        }
        for (std::size_t k = it.children.size(); k-- > 0;) {
            stack.push_back(it.children[k]);
            if (k > 0) stack.push_back(&comma);
        }
    }
}

} // namespace

std::string to_string(const tree& t) {
    const auto items = layout(t);
    std::string out;
    emit_inline(items, 0, out);
    return out;
}

std::string pformat(const tree& t, const print_options& options) {
    const auto items = layout(t);
    std::string out;
    auto pad = [&](std::size_t depth) {
        return std::string(std::min(depth, options.max_indent_levels) * options.indent, ' ');
    };
    struct frame {
        std::size_t id;
        std::size_t depth;
        std::size_t next; // next child; children.size() + k means extra k
    };
    std::vector<frame> stack{{0, 0, 0}};
    bool first = true;
    while (!stack.empty()) {
        frame& f = stack.back();
        const auto& it = items[f.id];
        if (f.next == 0 && first) {
            first = false;
            out += pad(f.depth);
            if (it.atom || pad(f.depth).size() + it.inline_width + 1 <= options.width) {
                emit_inline(items, f.id, out);
                stack.pop_back();
                if (!stack.empty()) out += ",\n";
                first = true;
                continue;
            }
            out += it.label + it.open + "\n";
        }
        const std::size_t total = it.children.size() + it.extras.size();
        if (f.next < it.children.size()) {
            const std::size_t child = it.children[f.next++];
            stack.push_back({child, f.depth + 1, 0});
            first = true;
            continue;
        }
        if (f.next < total) {
            out += pad(f.depth + 1) + it.extras[f.next - it.children.size()] + ",\n";
            ++f.next;
            continue;
        }
        out += pad(f.depth) + it.close;
        stack.pop_back();
        if (!stack.empty()) out += ",\n";
    }
    return out;
}

namespace {
// 1234567 -> "1,234,567": locale-independent, as the summary's columns are.
std::string grouped(std::size_t n) {
    std::string digits = std::to_string(n), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}
} // namespace

std::string summary(const tree& t) {
    struct row {
        std::string type;
        std::size_t count = 0, elements = 0;
    };
    std::vector<row> rows; // in order of first appearance
    const auto row_of = [&](std::string_view type) -> row& {
        const auto it =
            std::find_if(rows.begin(), rows.end(), [&](const row& r) { return r.type == type; });
        if (it != rows.end()) return *it;
        return rows.emplace_back(row{std::string(type), 0, 0});
    };
    // owner[d]: the row of the nearest record at depth <= d on the current pre-order path.
    std::vector<std::size_t> owner;
    constexpr std::size_t outside = static_cast<std::size_t>(-1);
    std::string name; // of the root, Shared nodes passed
    for (const views::node_ref n : views::nodes(t)) {
        if (name.empty() && n.kind() != node_kind::shared)
            name = n.kind() == node_kind::record ? std::string(n.record_name()) : "tree";
        owner.resize(n.depth() + 1);
        const std::size_t parent = n.depth() == 0 ? outside : owner[n.depth() - 1];
        owner[n.depth()] = parent;
        if (n.kind() == node_kind::record) {
            row& r = row_of(n.record_name());
            ++r.count;
            owner[n.depth()] = static_cast<std::size_t>(&r - rows.data());
        } else if (n.kind() == node_kind::leaf) {
            const tree leaf = n.get();
            if (!is_float_array(leaf)) continue;
            row& r = parent == outside ? row_of("(outside modules)") : rows[parent];
            r.elements += leaf.as_array().size();
        }
    }
    const auto count = count_parameters(t);
    std::string out = fmt::format("{}: {} trained parameters in {} arrays", name,
                                  grouped(count.elements), count.arrays);
    if (count.expanded_elements != count.elements)
        out += fmt::format(" ({} if each use held a copy)", grouped(count.expanded_elements));
    out += '\n';
    std::size_t width = 6;
    for (const auto& r : rows)
        width = std::max(width, r.type.size());
    out += fmt::format("  {:<{}}  count  own parameters\n", "module", width);
    for (const auto& r : rows)
        out += r.count == 0
                   ? fmt::format("  {:<{}}      -  {:>14}\n", r.type, width, grouped(r.elements))
                   : fmt::format("  {:<{}}  {:>5}  {:>14}\n", r.type, width, r.count,
                                 grouped(r.elements));
    for (const auto& tie : ties(t))
        out += fmt::format("  tie: {} is {}{}\n", keystr(tie.tied),
                           tie.getter.empty() ? keystr(tie.source) : tie.getter + "()",
                           to_string(tie.transforms));
    return out;
}

std::ostream& operator<<(std::ostream& os, const tree& t) {
    return os << to_string(t);
}

} // namespace paramtree
