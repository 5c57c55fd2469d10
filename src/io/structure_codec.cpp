// paramtree — the structure codec of checkpoint headers (see
// src/structure_codec.hpp): iterative in both directions.
#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/sharing.hpp>
#include "io/structure_codec.hpp"
#include <paramtree/detail/walk.hpp>
#include <paramtree/error.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

namespace paramtree::detail {

using json = nlohmann::json;

std::string tensor_name(const path& p) {
    return p.empty() ? std::string("__root__") : dotted(p);
}

bool valid_tensor_name(std::string_view name) noexcept {
    // Printable as it is: no control character (C0, DEL, C1), no format character that would
    // make one name look like another in a terminal (U+202E), valid UTF-8.
    return name != "__metadata__" && is_plain_text(name);
}

namespace {
// How deeply `text`'s arrays and objects nest, found in one pass (strings skipped): whether it
// passes `max_depth`. Invalid text is the parser's to refuse.
bool nests_deeper(std::string_view text, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i; // the escaped character, whatever it is
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return true;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return false;
}
} // namespace

json parse_bounded(std::string_view text, int max_depth, bool* too_deep) {
    // The depth is bounded before parsing, by a scan: nlohmann's parse callback could bound
    // it while parsing, but its parser then searches the parent container at the end of every
    // object (3.11.2), which made a header with 100,000 tied positions take minutes to load.
    // Parsing itself keeps its state on the heap: depth costs no stack.
    const bool deep = nests_deeper(text, max_depth);
    if (too_deep) *too_deep = deep;
    if (deep) return json(json::value_t::discarded);
    return json::parse(text.begin(), text.end(), nullptr, false);
}

std::string describe_json(const json& j) {
    switch (j.type()) {
    case json::value_t::object: {
        std::string keys;
        std::size_t n = 0;
        for (const auto& [k, v] : j.items()) {
            if (n == 4) {
                keys += ", ...";
                break;
            }
            keys += (n++ ? ", \"" : "\"") + escaped(k.substr(0, 40)) + "\"";
        }
        return j.empty() ? "an empty object" : "an object with keys " + keys;
    }
    case json::value_t::array:
        return fmt::format("an array of {}", j.size());
    case json::value_t::string: {
        const auto& s = j.get_ref<const std::string&>();
        return fmt::format("the string \"{}{}\"", escaped(s.substr(0, 60)),
                           s.size() > 60 ? "..." : "");
    }
    case json::value_t::number_unsigned:
        return fmt::format("the number {}", j.get<std::uint64_t>());
    case json::value_t::number_integer:
        return fmt::format("the number {}", j.get<std::int64_t>());
    case json::value_t::number_float:
        return fmt::format("the number {}", j.get<double>());
    case json::value_t::boolean:
        return j.get<bool>() ? "true" : "false";
    case json::value_t::null:
        return "null";
    default:
        return std::string(j.type_name());
    }
}

// ---- encoding -------------------------------------------------------------------------------

namespace {

json encode_static(const static_value& v) {
    return std::visit(
        [](const auto& x) -> json {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool>)
                return {{"k", "bool"}, {"v", x}};
            else if constexpr (std::is_same_v<T, std::int64_t>)
                return {{"k", "int"}, {"v", x}};
            else if constexpr (std::is_same_v<T, double>)
                return {{"k", "double"}, {"v", fmt::format("{}", x)}}; // exact, NaN and inf too
            else
                return {{"k", "str"}, {"v", x}};
        },
        v.get());
}

} // namespace

namespace {

using node_t = node;

/// One pre-order walk over a tree, appending each node's JSON to `nodes`, each array leaf to
/// `out.tensors` under its dotted path, and each tie to `out.ties` under the tied position's
/// (names checked printable and unique among tensors and ties).
class encoder {
public:
    explicit encoder(const std::string& context) : context_(context) {}

    encoded_structure run(const tree& t) {
        stack_.push_back({t.node(), 0, 0, std::nullopt, 0});
        while (!stack_.empty()) {
            item it = std::move(stack_.back());
            stack_.pop_back();
            move_to(cur_, it.path_depth, it.entry);
            if (it.depth >= max_structure_depth)
                fail(fmt::format("a tree at most {} levels deep", max_structure_depth), "deeper");
            visit(it);
        }
        check_tie_names();
        try {
            out_.text = json{{"version", 3}, {"nodes", std::move(nodes_)}}.dump();
            out_.ties = ties_.dump();
        } catch (const json::exception&) {
            throw format_error("save " + context_, "", "UTF-8 keys, names and strings",
                               "a string that is not valid UTF-8");
        }
        return std::move(out_);
    }

private:
    struct item {
        node_ptr n;
        std::size_t depth;      // nodes above it
        std::size_t path_depth; // entries of its parent's path
        std::optional<path_entry> entry;
        std::size_t scope; // path length at the innermost Shared node's child above it
    };

    [[noreturn]] void fail(std::string expected, std::string found) const {
        throw format_error("save " + context_, keystr(cur_), std::move(expected), std::move(found));
    }

    // Children are pushed in reverse so they come off the stack in order: pre-order output.
    void push_children(const item& it, const std::vector<node_ptr>& children,
                       const std::vector<std::optional<path_entry>>& entries) {
        for (std::size_t k = children.size(); k-- > 0;)
            stack_.push_back({children[k], it.depth + 1, cur_.size(), entries[k], it.scope});
    }

    void visit(const item& it) {
        const node_t& n = *it.n;
        switch (n.kind) {
        case node_kind::leaf:
            return leaf(n);
        case node_kind::none:
            nodes_.push_back({{"k", "none"}});
            return;
        case node_kind::list:
        case node_kind::tuple: {
            nodes_.push_back(
                {{"k", n.kind == node_kind::list ? "list" : "tuple"}, {"n", n.children.size()}});
            std::vector<node_ptr> children(n.children.begin(), n.children.end());
            std::vector<std::optional<path_entry>> entries;
            for (std::size_t k = 0; k < children.size(); ++k)
                entries.emplace_back(index_key{k});
            return push_children(it, children, entries);
        }
        case node_kind::dict:
        case node_kind::record:
            return keyed(it);
        case node_kind::shared: {
            const auto& m = meta_of<shared_meta>(n);
            json tags = json::array();
            for (const auto& [tag, at] : m.tags)
                tags.push_back({tag, keystr(at)});
            nodes_.push_back({{"k", "shared"}, {"tags", std::move(tags)}});
            // Paths pass through a Shared node without an entry of their own.
            stack_.push_back({n.children[0], it.depth + 1, cur_.size(), std::nullopt, cur_.size()});
            return;
        }
        case node_kind::tied:
            return tied(n, it.scope);
        }
    }

    void leaf(const node_t& n) {
        if (const auto* a = std::get_if<array>(&n.value)) {
            std::string name = tensor_name(cur_);
            if (!valid_tensor_name(name))
                fail("a tensor name of plain UTF-8 (no control or format characters), not "
                     "__metadata__",
                     fmt::format("'{}'", escaped(name)));
            const auto [at, fresh] = names_.emplace(name, cur_);
            if (!fresh)
                fail("a tensor name of its own",
                     fmt::format("'{}', also the name of {}", escaped(name),
                                 display_path(keystr(at->second))));
            nodes_.push_back({{"k", "array"}, {"name", name}});
            out_.tensors.emplace_back(std::move(name), *a);
        } else if (std::holds_alternative<std::monostate>(n.value)) {
            nodes_.push_back({{"k", "none"}});
        } else {
            nodes_.push_back(encode_static(std::visit(
                [](const auto& v) -> static_value {
                    using T = std::decay_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, array> || std::is_same_v<T, std::monostate>)
                        return static_value(false); // handled above
                    else
                        return static_value(v);
                },
                n.value)));
        }
    }

    // Dicts and records: children in insertion (dicts) or declaration (records) order, as
    // keys() lists them.
    void keyed(const item& it) {
        const node_t& n = *it.n;
        const tree node_tree(it.n);
        const auto keys = node_tree.keys();
        std::vector<node_ptr> children;
        std::vector<std::optional<path_entry>> entries;
        for (const auto& k : keys) {
            const path_entry e =
                n.kind == node_kind::dict ? path_entry{dict_key{k}} : path_entry{field_key{k}};
            const auto index = find_child(n, e);
            if (!index)
                throw_internal("a child for every key of a dict or record",
                               fmt::format("none for '{}'", escaped(k)));
            children.push_back(n.children[*index]);
            entries.emplace_back(e);
        }
        if (n.kind == node_kind::dict) {
            nodes_.push_back({{"k", "dict"}, {"keys", keys}});
        } else {
            json statics = json::array();
            for (const auto& [name, v] : node_tree.static_fields())
                statics.push_back({name, encode_static(v)});
            nodes_.push_back({{"k", "record"},
                              {"name", std::string(node_tree.record_name())},
                              {"fields", keys},
                              {"statics", std::move(statics)}});
        }
        push_children(it, children, entries);
    }

    /// A tie is written once, in `ties_` under the tied position's tensor name: its source as
    /// a tensor name (for other tools) and as a key path relative to its Shared node (what
    /// decoding rebuilds it from), and its transforms. The node list only marks the place.
    void tied(const node_t& n, std::size_t scope) {
        const auto& m = meta_of<tie_meta>(n);
        if (m.fn)
            throw sharing_error("save " + context_, keystr(cur_), "a tie to a path (savable)",
                                fmt::format("a tie through the callable get '{}'", m.fn_name));
        json transforms = json::array();
        for (const auto& tr : m.transforms)
            if (tr.kind() != transform::op::identity) transforms.push_back(tr.to_string());
        std::vector<path_entry> source(cur_.begin(),
                                       cur_.begin() + static_cast<std::ptrdiff_t>(scope));
        source.insert(source.end(), m.source.begin(), m.source.end());
        std::string name = tensor_name(cur_);
        tie_paths_.emplace_back(name, cur_);
        ties_[std::move(name)] = {{"source", tensor_name(path(std::move(source)))},
                                  {"transforms", std::move(transforms)},
                                  {"from", keystr(m.source)}};
        nodes_.push_back({{"k", "tied"}});
    }

    /// The loader finds ties by name: a tie's name must be printable and neither a tensor's
    /// nor another tie's.
    void check_tie_names() const {
        std::map<std::string, const path*> ties;
        for (const auto& tie : tie_paths_) {
            const std::string& name = tie.first;
            const path& at = tie.second; // named: clang 14 cannot capture a structured binding
            auto fail_at = [&](std::string expected, std::string found) {
                throw format_error("save " + context_, keystr(at), std::move(expected),
                                   std::move(found));
            };
            if (!valid_tensor_name(name))
                fail_at(
                    "a tie name of plain UTF-8 (no control or format characters), not __metadata__",
                    fmt::format("'{}'", escaped(name)));
            if (const auto t = names_.find(name); t != names_.end())
                fail_at("a tie name of its own",
                        fmt::format("'{}', also the name of a tensor", escaped(name)));
            if (const auto [other, fresh] = ties.emplace(name, &at); !fresh)
                fail_at("a tie name of its own",
                        fmt::format("'{}', also the name of the tie at {}", escaped(name),
                                    display_path(keystr(*other->second))));
        }
    }

    const std::string& context_;
    encoded_structure out_;
    json nodes_ = json::array();
    std::map<std::string, path> names_; // tensor name -> the leaf it came from
    json ties_ = json::object();
    std::vector<std::pair<std::string, path>> tie_paths_; // tie name -> the tied position
    std::vector<item> stack_;
    path cur_;
};

} // namespace

encoded_structure encode_structure(const tree& t, const std::string& context) {
    // A placeholder cut from its scope has no source to name: the file would not load.
    check_no_dangling(t, "save " + context);
    return encoder(context).run(t);
}

// ---- decoding -------------------------------------------------------------------------------

namespace {

class decoder {
public:
    decoder(const std::function<array(const std::string&)>& tensor, const json& ties,
            const std::string& context)
        : tensor_(tensor), ties_(ties), context_(context) {}

    tree decode(const json& nodes);

    [[noreturn]] void bad(std::string expected, const json& found) const {
        throw format_error("safetensors " + context_, keystr(cur_),
                           "structure: " + std::move(expected), describe_json(found));
    }
    [[noreturn]] void bad_text(std::string expected, std::string found) const {
        throw format_error("safetensors " + context_, keystr(cur_),
                           "structure: " + std::move(expected), std::move(found));
    }
    const json& field(const json& j, const char* name) const {
        if (!j.is_object() || !j.contains(name)) bad(fmt::format("a node with '{}'", name), j);
        return j[name];
    }
    std::string text(const json& j, const char* name) const {
        const json& v = field(j, name);
        if (!v.is_string()) bad(fmt::format("a string '{}'", name), v);
        return v.get<std::string>();
    }
    const json& list_of(const json& j, const char* name) const {
        const json& v = field(j, name);
        if (!v.is_array()) bad(fmt::format("a list '{}'", name), v);
        return v;
    }
    std::vector<std::string> strings(const json& j, const char* name) const {
        std::vector<std::string> out;
        for (const auto& s : list_of(j, name)) {
            if (!s.is_string()) bad(fmt::format("strings in '{}'", name), s);
            out.push_back(s.get<std::string>());
        }
        return out;
    }

    static_value decode_static(const json& j) const {
        const std::string k = text(j, "k");
        const json& v = field(j, "v");
        if (k == "bool" && v.is_boolean()) return v.get<bool>();
        if (k == "int" && v.is_number_integer()) {
            // 2^64-1 is a JSON integer too, but not an int64: refuse it rather than wrap to -1.
            if (v.is_number_unsigned() &&
                v.get<std::uint64_t>() >
                    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                bad("an integer that fits in 64 signed bits", v);
            return v.get<std::int64_t>();
        }
        if (k == "str" && v.is_string()) return v.get<std::string>();
        if (k == "double" && v.is_string()) {
            const std::string s = v.get<std::string>();
            double d = 0;
            // from_chars: the C locale's decimal point whatever the process locale.
            const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
            if (ec == std::errc{} && end == s.data() + s.size()) return d;
            if (s == "nan" || s == "-nan") return std::numeric_limits<double>::quiet_NaN();
            if (s == "inf") return std::numeric_limits<double>::infinity();
            if (s == "-inf") return -std::numeric_limits<double>::infinity();
        }
        bad("a bool, int, double or string value", j);
    }

private:
    struct pending_tie {
        path where;      // relative to the Shared node's child
        get_entry entry; // its source (relative to the same) and transforms
    };
    struct scope {
        std::size_t base; // path length at the Shared node's child
        std::vector<pending_tie> ties;
        std::vector<std::pair<std::string, path>> tags;
    };
    struct frame {
        std::string kind;
        std::size_t expected = 0;
        std::vector<std::string> names; // dict keys or record fields
        std::string record_name;
        std::vector<std::pair<std::string, static_value>> statics;
        std::vector<tree> children;
        std::size_t path_depth = 0; // its own path length
    };

    tree finish(frame& f);
    /// A `tied` node: its placeholder, recorded against the enclosing Shared scope, which
    /// checks it when it finishes.
    tree tie(const json& j);
    /// A `record` node's frame, its statics decoded; `remaining` nodes follow it.
    frame record_frame(const json& j, std::size_t remaining);
    /// A `shared` node: opens a scope for the ties below it.
    void open_shared(const json& j);

    const std::function<array(const std::string&)>& tensor_;
    const json& ties_; // the header's paramtree.ties (an object; empty for formats 1 and 2)
    const std::string& context_;
    path cur_;
    std::vector<scope> scopes_;
    std::set<std::string> tensors_used_; // by array nodes
    std::set<std::string> ties_used_;    // entries of ties_ read by tied nodes (format 3)

public:
    /// Format 3: every entry of paramtree.ties is a tied node of the structure.
    void check_all_ties_used(bool format3) const {
        if (!format3 || !ties_.is_object()) return;
        for (const auto& [name, entry] : ties_.items())
            if (!ties_used_.contains(name))
                bad_text("a tie in paramtree.ties for each tied node, and no other",
                         fmt::format("the tie '{}', whose position the structure does not tie",
                                     escaped(name)));
    }
};

tree decoder::finish(frame& f) {
    if (f.kind == "list") return list(std::move(f.children));
    if (f.kind == "tuple") return paramtree::tuple(std::move(f.children));
    if (f.kind == "dict" || f.kind == "record") {
        std::vector<std::pair<std::string, tree>> items;
        for (std::size_t i = 0; i < f.children.size(); ++i)
            items.emplace_back(std::move(f.names[i]), std::move(f.children[i]));
        if (f.kind == "dict") return dict(std::move(items));
        // The file may restore paramtree's own modules (reserved `pt.` names).
        return reserved_record(std::move(f.record_name), std::move(items), std::move(f.statics));
    }
    // shared: the ties are placeholders already (delivered by `tie`); the scope checks them
    // as share would, from shapes alone.
    scope s = std::move(scopes_.back());
    scopes_.pop_back();
    tree child = std::move(f.children.front());
    for (const auto& [tag, at] : s.tags)
        if (!try_locate(*child.node(), at).target)
            bad_text(fmt::format("the tag '{}' naming a position of its Shared node", escaped(tag)),
                     fmt::format("{}, which is not there", display_path(keystr(at))));
    // A Shared node without ties of its own (an outer one around a scope, or one whose ties
    // were untied) is still part of the structure that was saved.
    if (s.ties.empty()) return scope_over(child, std::move(s.tags));
    std::vector<path> where;
    std::vector<get_entry> gets;
    for (auto& t : s.ties) {
        where.push_back(std::move(t.where));
        gets.push_back(std::move(t.entry));
    }
    return shared_scope(child, where, gets, std::move(s.tags));
}

tree decoder::tie(const json& j) {
    if (scopes_.empty()) bad("a tie inside a Shared node", j);
    const scope& s = scopes_.back();
    pending_tie tie{path(std::vector<path_entry>(cur_.begin() + static_cast<std::ptrdiff_t>(s.base),
                                                 cur_.end())),
                    {}};
    // Formats 1 and 2 hold the tie in its node; format 3 in paramtree.ties, under the tied
    // position's tensor name, with the source path in "from".
    const bool inline_tie = j.is_object() && j.contains("source");
    const std::string name = tensor_name(cur_);
    if (!inline_tie && !ties_.contains(name))
        bad_text("the tie in paramtree.ties", fmt::format("no tie named '{}'", escaped(name)));
    const json& entry = inline_tie ? j : ties_[name];
    if (!inline_tie) ties_used_.insert(name);
    const std::string source = text(entry, inline_tie ? "source" : "from");
    const json& transforms = list_of(entry, "transforms");
    for (const auto& tr : transforms)
        if (!tr.is_string()) bad("transform texts", tr);
    try {
        tie.entry.from = parse_path(source);
        for (const auto& tr : transforms)
            tie.entry.transforms.push_back(transform::parse(tr.get<std::string>()));
    } catch (const error& e) {
        bad_text("a tie source path and transforms: " + e.expected(), e.found());
    }
    tree placeholder = tie_placeholder(tie.entry);
    scopes_.back().ties.push_back(std::move(tie));
    return placeholder;
}

decoder::frame decoder::record_frame(const json& j, std::size_t remaining) {
    frame f{"record", 0, strings(j, "fields"), text(j, "name"), {}, {}, cur_.size()};
    if (f.names.size() > remaining) bad("a child per field", j);
    f.expected = f.names.size();
    for (const auto& s : list_of(j, "statics")) {
        if (!s.is_array() || s.size() != 2 || !s[0].is_string()) bad("[name, value] statics", s);
        f.statics.emplace_back(s[0].get<std::string>(), decode_static(s[1]));
    }
    return f;
}

void decoder::open_shared(const json& j) {
    scope s{cur_.size(), {}, {}};
    for (const auto& t : list_of(j, "tags")) {
        if (!t.is_array() || t.size() != 2 || !t[0].is_string() || !t[1].is_string())
            bad("[tag, path] tags", t);
        try {
            s.tags.emplace_back(t[0].get<std::string>(), parse_path(t[1].get<std::string>()));
        } catch (const path_error&) {
            bad("a tag path", t[1]);
        }
    }
    scopes_.push_back(std::move(s));
}

tree decoder::decode(const json& nodes) {
    std::vector<frame> frames;
    std::optional<tree> result;
    std::size_t i = 0;
    auto deliver = [&](tree t) {
        if (frames.empty())
            result = std::move(t);
        else
            frames.back().children.push_back(std::move(t));
    };
    while (true) {
        while (!frames.empty() && frames.back().children.size() == frames.back().expected) {
            move_to(cur_, frames.back().path_depth, std::nullopt);
            tree t = finish(frames.back());
            frames.pop_back();
            deliver(std::move(t));
        }
        if (result) break;
        if (i >= nodes.size()) bad("more nodes (the list ends inside a container)", nodes);
        if (!frames.empty()) {
            const frame& f = frames.back();
            const std::size_t k = f.children.size();
            std::optional<path_entry> entry;
            if (f.kind == "list" || f.kind == "tuple") entry = index_key{k};
            if (f.kind == "dict") entry = dict_key{f.names[k]};
            if (f.kind == "record") entry = field_key{f.names[k]};
            move_to(cur_, f.path_depth, entry);
        }
        if (frames.size() >= max_structure_depth)
            bad(fmt::format("at most {} levels", max_structure_depth), nodes[i]);
        const json& j = nodes[i++];
        const std::string k = text(j, "k");
        if (k == "array") {
            std::string name = text(j, "name");
            // Two leaves reading one tensor would alias after load: a tie nobody declared.
            if (!tensors_used_.insert(name).second)
                bad_text("each tensor named by one leaf",
                         fmt::format("'{}' named again", escaped(name)));
            deliver(tensor_(name));
        } else if (k == "none") {
            deliver(tree{});
        } else if (k == "bool" || k == "int" || k == "double" || k == "str") {
            deliver(std::visit([](const auto& v) { return tree(v); }, decode_static(j).get()));
        } else if (k == "tied") {
            deliver(tie(j)); // a placeholder, checked when its Shared node finishes
        } else if (k == "list" || k == "tuple") {
            const json& n = field(j, "n");
            if (!n.is_number_unsigned() || n.get<std::uint64_t>() > nodes.size() - i)
                bad("a child count no larger than the nodes that follow", n);
            frames.push_back({k, n.get<std::size_t>(), {}, {}, {}, {}, cur_.size()});
        } else if (k == "dict") {
            auto keys = strings(j, "keys");
            if (keys.size() > nodes.size() - i) bad("a child per key", j);
            const std::size_t count = keys.size();
            frames.push_back({k, count, std::move(keys), {}, {}, {}, cur_.size()});
        } else if (k == "record") {
            frames.push_back(record_frame(j, nodes.size() - i));
        } else if (k == "shared") {
            open_shared(j);
            frames.push_back({k, 1, {}, {}, {}, {}, cur_.size()});
        } else {
            bad("a known node kind", j["k"]);
        }
    }
    if (i != nodes.size())
        bad_text(fmt::format("{} nodes (the root ends there)", i),
                 fmt::format("{} nodes", nodes.size()));
    return std::move(*result);
}

/// Format 1 (nested `{"k": ..., "c": children}`) as the flat node list of format 2, with an
/// explicit stack: a deep file costs heap, not stack.
json flatten_v1(const json& root, const decoder& d) {
    json out = json::array();
    std::vector<const json*> stack{&root};
    while (!stack.empty()) {
        const json& j = *stack.back();
        stack.pop_back();
        const std::string k = d.text(j, "k");
        json flat = json::object();
        for (const auto& [key, v] : j.items())
            if (key != "c") flat[key] = v;
        std::vector<const json*> children;
        if (k == "list" || k == "tuple" || k == "record") {
            for (const auto& c : d.list_of(j, "c"))
                children.push_back(&c);
            if (k != "record") flat["n"] = children.size();
        } else if (k == "dict") {
            const json& c = d.field(j, "c");
            for (const auto& key : d.list_of(j, "keys")) {
                if (!key.is_string() || !c.is_object() || !c.contains(key.get<std::string>()))
                    d.bad("dict keys with a child each", key);
                children.push_back(&c[key.get<std::string>()]);
            }
        } else if (k == "shared") {
            children.push_back(&d.field(j, "c"));
        }
        out.push_back(std::move(flat));
        for (auto it = children.rbegin(); it != children.rend(); ++it)
            stack.push_back(*it);
    }
    return out;
}

} // namespace

tree decode_structure(const std::string& text,
                      const std::function<array(const std::string&)>& tensor,
                      const nlohmann::json& ties, const std::string& context) {
    decoder d(tensor, ties, context);
    // Format 2 is at most six levels deep; format 1 nests two levels per tree level.
    bool too_deep = false;
    const json j = parse_bounded(text, 2 * static_cast<int>(max_structure_depth) + 8, &too_deep);
    if (too_deep)
        d.bad_text(fmt::format("JSON nested at most {} levels", 2 * max_structure_depth + 8),
                   "deeper nesting");
    if (j.is_discarded()) d.bad_text("valid JSON", "invalid JSON");
    try {
        if (j.is_object() && j.contains("version")) {
            const json& v = j["version"];
            if (!v.is_number_unsigned() || v.get<std::uint64_t>() < 2 || v.get<std::uint64_t>() > 3)
                d.bad("structure format version 2 or 3 (or the unversioned format 1)", v);
            tree out = d.decode(d.list_of(j, "nodes"));
            d.check_all_ties_used(v.get<std::uint64_t>() == 3);
            return out;
        }
        return d.decode(flatten_v1(j, d));
    } catch (const format_error&) {
        throw;
    } catch (const error& e) {
        // Whatever the tree constructors object to (a duplicate key, a tie to nowhere, a
        // field name that is not an identifier) is a malformed file here.
        throw format_error("safetensors " + context, e.path(), "structure: " + e.expected(),
                           e.found() + " (" + e.context() + ")");
    }
}

} // namespace paramtree::detail
