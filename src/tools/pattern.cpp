// paramtree — path patterns (see <paramtree/pattern.hpp>): parsing, printing, matching a
// path, and the walk that lists a tree's matching positions.
#include <paramtree/pattern.hpp>

#include <paramtree/detail/cursor.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/walk.hpp>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace paramtree {

namespace {

using segment = pattern::segment;
using kind = pattern::segment::kind;

struct pattern_reader {
    std::string_view text;
    std::size_t i = 0;
    std::vector<segment> out;

    [[noreturn]] void fail(std::string_view what) const {
        detail::throw_path("pattern", {}, std::string(what),
                           fmt::format("'{}' at offset {} of \"{}\"",
                                       i < text.size() ? text.substr(i, 1) : "end", i, text));
    }
    [[nodiscard]] bool at(char c) const { return i < text.size() && text[i] == c; }

    // One plain entry, read by parse_path itself (one reader of quotes, escapes, dotted names).
    void exact(std::string_view piece) {
        const path p = parse_path(piece);
        if (p.size() != 1) fail("one entry");
        out.push_back({kind::exact, p[0], 0, segment::npos, {}});
    }

    // After '.': `*`, `**`, `{a,b}` or a dotted name.
    void dotted() {
        if (at('*')) {
            ++i;
            const bool deep = at('*');
            if (deep) ++i;
            out.push_back({deep ? kind::any_depth : kind::any, {}, 0, segment::npos, {}});
            return;
        }
        if (at('{')) {
            const std::size_t close = text.find('}', i);
            if (close == std::string_view::npos) fail("a closing '}'");
            segment s{kind::names, {}, 0, segment::npos, {}};
            std::string_view inside = text.substr(i + 1, close - i - 1);
            for (std::size_t start = 0; start <= inside.size();) {
                const std::size_t comma = std::min(inside.find(',', start), inside.size());
                const std::string_view name = inside.substr(start, comma - start);
                if (name.empty()) fail("names separated by ',' inside '{...}'");
                s.names.emplace_back(name);
                start = comma + 1;
            }
            i = close + 1;
            out.push_back(std::move(s));
            return;
        }
        const std::size_t start = i;
        while (i < text.size() && text[i] != '.' && text[i] != '[')
            ++i;
        if (i == start) fail("a name, '*', '**' or '{...}' after '.'");
        exact(std::string(".").append(text.substr(start, i - start)));
    }

    // After '[': `*`, `a:b`, a quoted key or an index.
    void bracket() {
        const std::size_t open = i++;
        if (at('*')) {
            ++i;
            if (!at(']')) fail("']' after '[*'");
            ++i;
            out.push_back({kind::any_index, {}, 0, segment::npos, {}});
            return;
        }
        if (at('\'') || at('"')) {
            // The closing quote (escapes skipped), then parse_path reads the whole bracket.
            const char quote = text[i++];
            while (i < text.size() && text[i] != quote)
                i += text[i] == '\\' ? 2 : 1;
            if (i >= text.size()) fail("a closing quote");
            ++i;
            if (!at(']')) fail("']'");
            ++i;
            exact(text.substr(open, i - open));
            return;
        }
        const std::size_t close = text.find(']', i);
        if (close == std::string_view::npos) fail("a closing ']'");
        const std::string_view inside = text.substr(i, close - i);
        const std::size_t colon = inside.find(':');
        if (colon == std::string_view::npos) {
            exact(text.substr(open, close + 1 - open));
            i = close + 1;
            return;
        }
        segment s{kind::range, {}, 0, segment::npos, {}};
        const auto number = [&](std::string_view digits, std::size_t& v) {
            if (digits.empty()) return;
            const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
            if (ec != std::errc{} || p != digits.data() + digits.size())
                fail("an index range [a:b] of whole numbers");
        };
        number(inside.substr(0, colon), s.lo);
        number(inside.substr(colon + 1), s.hi);
        if (s.hi != segment::npos && s.hi < s.lo) fail("a range [a:b] with a <= b");
        i = close + 1;
        out.push_back(std::move(s));
    }

    std::vector<segment> read() && {
        if (text.empty()) return {};
        // As in parse_path, the first name needs no dot.
        if (!at('.') && !at('[')) dotted();
        while (i < text.size()) {
            if (at('.')) {
                ++i;
                dotted();
            } else if (at('[')) {
                bracket();
            } else {
                fail("'.' or '['");
            }
        }
        return std::move(out);
    }
};

// A name segment (field or dict key) as the tree spells it: `.w` finds a dict key `w` too.
std::string_view name_of(const path_entry& e) {
    if (const auto* f = std::get_if<field_key>(&e)) return f->name;
    if (const auto* d = std::get_if<dict_key>(&e)) return d->key;
    return {};
}

bool entry_matches(const segment& s, const path_entry& e) {
    switch (s.k) {
    case kind::exact:
        if (s.entry == e) return true;
        // A field or index written in dotted text also finds the dict key of that spelling.
        if (const auto* d = std::get_if<dict_key>(&e)) {
            if (const auto* f = std::get_if<field_key>(&s.entry)) return f->name == d->key;
            if (const auto* x = std::get_if<index_key>(&s.entry))
                return std::to_string(x->index) == d->key;
        }
        return false;
    case kind::any:
        return true;
    case kind::any_depth:
        return true;
    case kind::any_index:
    case kind::range: {
        const auto* x = std::get_if<index_key>(&e);
        return x && x->index >= s.lo && x->index < s.hi;
    }
    case kind::names: {
        if (std::holds_alternative<index_key>(e)) return false;
        const std::string_view n = name_of(e);
        return std::find(s.names.begin(), s.names.end(), n) != s.names.end();
    }
    }
    return false;
}

// The states (positions in the pattern) a walk is in: sorted, each once, with every `**`
// also standing for the state after it (it may match no entry).
using states = std::vector<std::size_t>;

states closure(const std::vector<segment>& seg, states s) {
    for (std::size_t k = 0; k < s.size(); ++k)
        if (s[k] < seg.size() && seg[s[k]].k == kind::any_depth &&
            std::find(s.begin(), s.end(), s[k] + 1) == s.end())
            s.push_back(s[k] + 1);
    std::sort(s.begin(), s.end());
    return s;
}

states step(const std::vector<segment>& seg, const states& from, const path_entry& e) {
    states next;
    for (const std::size_t k : from) {
        if (k >= seg.size() || !entry_matches(seg[k], e)) continue;
        // `**` consumes the entry and stays; any other segment moves on.
        next.push_back(seg[k].k == kind::any_depth ? k : k + 1);
    }
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    return closure(seg, std::move(next));
}

bool accepts(const std::vector<segment>& seg, const states& s) {
    return std::find(s.begin(), s.end(), seg.size()) != s.end();
}

std::string segment_text(const segment& s) {
    switch (s.k) {
    case kind::exact:
        return entry_str(s.entry);
    case kind::any:
        return ".*";
    case kind::any_depth:
        return ".**";
    case kind::any_index:
        return "[*]";
    case kind::range:
        return fmt::format("[{}:{}]", s.lo,
                           s.hi == segment::npos ? std::string() : std::to_string(s.hi));
    case kind::names: {
        std::string out = ".{";
        for (std::size_t i = 0; i < s.names.size(); ++i)
            out += (i ? "," : "") + s.names[i];
        return out + "}";
    }
    }
    return {};
}

// The segments as a pattern's text: the first name needs no dot, as in parse_path.
std::string text_of(const std::vector<segment>& segments) {
    std::string out;
    for (const auto& s : segments)
        out += segment_text(s);
    if (out.starts_with('.')) out.erase(0, 1);
    return out;
}

// The positions of `t` the segments match (pre-order, each once; a Shared node and its child
// share a position: the Shared node is the one named, as tree::at returns it).
std::vector<path> matching(const tree& t, const std::vector<segment>& seg) {
    std::vector<path> out;
    std::vector<states> at_depth{closure(seg, {0})};
    detail::preorder(*t.node(), [&](const detail::node& n, const detail::walk_position<1>& pos) {
        const std::size_t d = pos.depth();
        if (d > 0) {
            const auto entry = pos.entry();
            at_depth.resize(d + 1);
            at_depth[d] = entry ? step(seg, at_depth[d - 1], *entry) : at_depth[d - 1];
            // A Shared node's child is its parent's position again: not named twice.
            if (accepts(seg, at_depth[d]) && entry) out.push_back(pos.current_path());
        } else if (accepts(seg, at_depth[0])) {
            out.push_back({});
        }
        if (at_depth[d].empty() || n.kind == node_kind::tied) return detail::visit::skip;
        return detail::visit::descend;
    });
    return out;
}

} // namespace

pattern::pattern(std::string_view text) : segments_(pattern_reader{text, 0, {}}.read()) {}

pattern::pattern(const path& p) {
    for (const auto& e : p)
        segments_.push_back({segment::kind::exact, e, 0, segment::npos, {}});
}

std::string pattern::to_string() const {
    return text_of(segments_);
}

bool pattern::matches(const path& p) const {
    states s = closure(segments_, {0});
    for (const auto& e : p) {
        s = step(segments_, s, e);
        if (s.empty()) return false;
    }
    return accepts(segments_, s);
}

std::vector<path> expand_pattern(const tree& t, const pattern& p) {
    std::vector<path> found = matching(t, p.segments());
    if (!found.empty()) return found;
    // Nothing: name the longest leading part that does match, and where it leads.
    std::vector<segment> prefix = p.segments();
    std::vector<path> nearest;
    while (!prefix.empty() && nearest.empty()) {
        prefix.pop_back();
        nearest = matching(t, prefix);
    }
    std::string near;
    for (std::size_t i = 0; i < nearest.size() && i < 3; ++i)
        near += (i ? ", " : "") + display_path(keystr(nearest[i]));
    if (nearest.size() > 3) near += fmt::format(" and {} more", nearest.size() - 3);
    if (!nearest.empty()) {
        const tree first = t.at(nearest.front());
        std::string kids;
        for (std::size_t i = 0; i < first.size() && i < 8; ++i)
            kids += (i ? " " : "") + entry_str(first.entry(i));
        near += kids.empty() ? fmt::format(" ({} there)", describe(first))
                             : fmt::format(" (children there: {})", kids);
    }
    detail::throw_path(
        "expand_pattern", {}, fmt::format("a position matching '{}'", p.to_string()),
        nearest.empty() ? std::string("none")
                        : fmt::format("none; the nearest: '{}' matches {}", text_of(prefix), near));
}

} // namespace paramtree
