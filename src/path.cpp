// paramtree — key path printing and parsing.
#include <paramtree/detail/errors.hpp>
#include <paramtree/path.hpp>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace paramtree {

namespace detail {
std::string escaped(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\'' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            // Control characters (NUL included) are printed, never emitted raw: a name with a
            // NUL must not look like a shorter one to a C-string consumer.
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    return out;
}
} // namespace detail

namespace {
struct entry_printer {
    std::string operator()(const index_key& k) const { return fmt::format("[{}]", k.index); }
    std::string operator()(const dict_key& k) const { return "['" + detail::escaped(k.key) + "']"; }
    std::string operator()(const field_key& k) const { return "." + k.name; }
};
} // namespace

std::string entry_str(const path_entry& e) {
    return std::visit(entry_printer{}, e);
}

std::string keystr(const path& p) {
    std::string out;
    for (const auto& e : p)
        out += entry_str(e);
    return out;
}

std::string dotted(const path& p) {
    std::string out;
    for (const auto& e : p) {
        if (!out.empty()) out += '.';
        std::visit(
            [&](const auto& k) {
                using K = std::decay_t<decltype(k)>;
                if constexpr (std::is_same_v<K, index_key>)
                    out += std::to_string(k.index);
                else if constexpr (std::is_same_v<K, dict_key>)
                    out += k.key;
                else
                    out += k.name;
            },
            e);
    }
    return out;
}

path path::operator/(const path& tail) const {
    path p = *this;
    p.entries_.insert(p.entries_.end(), tail.entries_.begin(), tail.entries_.end());
    return p;
}

path path::prefix(std::size_t n) const {
    return path(std::vector<path_entry>(
        entries_.begin(),
        entries_.begin() + static_cast<std::ptrdiff_t>(std::min(n, entries_.size()))));
}

bool path::is_prefix_of(const path& other) const noexcept {
    if (size() > other.size()) return false;
    for (std::size_t i = 0; i < size(); ++i)
        if (entries_[i] != other.entries_[i]) return false;
    return true;
}

namespace detail {
bool is_identifier(std::string_view s) noexcept {
    auto alpha = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    if (s.empty() || !alpha(s.front())) return false;
    return std::all_of(s.begin(), s.end(),
                       [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}
} // namespace detail

namespace {
bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One reader over the text; `fail` names the offset, the character and what was expected.
struct path_reader {
    std::string_view text;
    std::size_t i = 0;
    path out;

    [[noreturn]] void fail(std::string_view what) const {
        detail::throw_path("parse_path", out, std::string(what),
                           fmt::format("'{}' at offset {} of \"{}\"",
                                       i < text.size() ? text.substr(i, 1) : "end", i, text));
    }
    [[nodiscard]] bool at(char c) const { return i < text.size() && text[i] == c; }

    // A segment of dotted text (`layers.1.bias`, or `.1` after a field): digits are an index,
    // an identifier a field (which also finds a dict key of that spelling when the path is
    // resolved against a tree), anything else can only be a dict key.
    void segment() {
        const std::size_t start = i;
        while (i < text.size() && text[i] != '.' && text[i] != '[')
            ++i;
        const auto s = text.substr(start, i - start);
        if (s.empty()) {
            i = start;
            fail("a name or an index after '.'");
        }
        std::size_t value = 0;
        if (all_digits(s)) {
            const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
            if (ec != std::errc{}) {
                i = start;
                fail("an index that fits in 64 bits");
            }
            out.push_back(index_key{value});
        } else if (detail::is_identifier(s)) {
            out.push_back(field_key{std::string(s)});
        } else {
            out.push_back(dict_key{std::string(s)});
        }
    }

    // `['key']` or `["key"]` with `\\`, `\'`, `\"` and `\xHH` escapes, or `[3]`.
    void bracket() {
        ++i;
        if (at('\'') || at('"')) {
            const char quote = text[i++];
            std::string key;
            while (i < text.size() && text[i] != quote) {
                if (text[i] == '\\' && i + 1 < text.size()) {
                    ++i;
                    // `\xHH`: a control character as `keystr` prints it.
                    unsigned code = 0;
                    if (text[i] == 'x' && i + 2 < text.size() &&
                        std::from_chars(text.data() + i + 1, text.data() + i + 3, code, 16).ptr ==
                            text.data() + i + 3) {
                        key += static_cast<char>(code);
                        i += 3;
                        continue;
                    }
                }
                key += text[i++];
            }
            if (i >= text.size()) fail(quote == '"' ? "a closing '\"'" : "a closing quote");
            ++i;
            if (!at(']')) fail("']'");
            ++i;
            out.push_back(dict_key{std::move(key)});
            return;
        }
        std::size_t value = 0;
        const auto* first = text.data() + i;
        const auto [ptr, ec] = std::from_chars(first, text.data() + text.size(), value);
        if (ec != std::errc{} || ptr == first) fail("an index or a quoted key after '['");
        i += static_cast<std::size_t>(ptr - first);
        if (!at(']')) fail("']'");
        ++i;
        out.push_back(index_key{value});
    }

    path read() && {
        // Dotted text as checkpoints and load errors print it starts with a name.
        if (i < text.size() && text[i] != '.' && text[i] != '[') segment();
        while (i < text.size()) {
            if (text[i] == '.') {
                ++i;
                segment();
            } else if (text[i] == '[') {
                bracket();
            } else {
                fail("'.' or '['");
            }
        }
        return std::move(out);
    }
};
} // namespace

path parse_path(std::string_view text) {
    return path_reader{text, 0, {}}.read();
}

} // namespace paramtree
