// paramtree — key path printing and parsing.
#include <paramtree/detail/errors.hpp>
#include <paramtree/path.hpp>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace paramtree {

namespace detail {

std::pair<char32_t, std::size_t> utf8_at(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char lead = b(0);
    if (lead < 0x80) return {lead, 1};
    std::size_t n = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 0;
    if (n == 0 || lead >= 0xf8 || i + n > s.size()) return {invalid_utf8, 1};
    char32_t cp = lead & (0x7f >> n);
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(k) & 0xc0) != 0x80) return {invalid_utf8, 1};
        cp = (cp << 6) | (b(k) & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return {invalid_utf8, 1};
    return {cp, n};
}

bool is_format_char(char32_t cp) noexcept {
    // Unicode's general category Cf (format characters: bidi controls, zero-width joiners and
    // spaces, tags), from UnicodeData.txt 15.0: they change how text around them shows.
    static constexpr std::pair<char32_t, char32_t> ranges[] = {
        {0x00ad, 0x00ad},   {0x0600, 0x0605},   {0x061c, 0x061c},   {0x06dd, 0x06dd},
        {0x070f, 0x070f},   {0x0890, 0x0891},   {0x08e2, 0x08e2},   {0x180e, 0x180e},
        {0x200b, 0x200f},   {0x202a, 0x202e},   {0x2060, 0x2064},   {0x2066, 0x206f},
        {0xfeff, 0xfeff},   {0xfff9, 0xfffb},   {0x110bd, 0x110bd}, {0x110cd, 0x110cd},
        {0x13430, 0x1343f}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a}, {0xe0001, 0xe0001},
        {0xe0020, 0xe007f}};
    for (const auto& [lo, hi] : ranges)
        if (cp >= lo && cp <= hi) return true;
    return false;
}

namespace {
// What a terminal could be fooled by: C0 and C1 controls, DEL, format characters.
bool deceptive(char32_t cp) noexcept {
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || is_format_char(cp);
}
} // namespace

bool is_plain_text(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const auto [cp, n] = utf8_at(s, i);
        if (cp == invalid_utf8 || deceptive(cp)) return false;
        i += n;
    }
    return true;
}

std::string escaped(std::string_view s, char quote) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const auto [cp, n] = utf8_at(s, i);
        if (cp == invalid_utf8 || cp < 0x20 || cp == 0x7f) {
            // Control characters (NUL included) and bytes that are not UTF-8 are printed,
            // never emitted raw: a name with a NUL must not look like a shorter one to a
            // C-string consumer.
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(s[i]));
        } else if (deceptive(cp)) {
            // C1 controls and format characters (U+202E reverses what follows): a printed
            // path shows them, it does not obey them.
            out += cp > 0xffff ? fmt::format("\\U{:08x}", static_cast<std::uint32_t>(cp))
                               : fmt::format("\\u{:04x}", static_cast<std::uint32_t>(cp));
        } else {
            if (cp == static_cast<unsigned char>(quote) || cp == '\\') out += '\\';
            out.append(s.substr(i, n));
        }
        i += n;
    }
    return out;
}

std::string quoted(std::string_view key) {
    // Python's repr: single quotes unless the key holds one and no double quote (JAX's
    // keystr prints `["it's"]`).
    const bool double_quotes =
        key.find('\'') != std::string_view::npos && key.find('"') == std::string_view::npos;
    const char q = double_quotes ? '"' : '\'';
    return q + escaped(key, q) + q;
}

} // namespace detail

namespace {
void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

struct entry_printer {
    std::string operator()(const index_key& k) const { return fmt::format("[{}]", k.index); }
    std::string operator()(const dict_key& k) const { return "[" + detail::quoted(k.key) + "]"; }
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

path path::suffix(std::size_t n) const {
    if (n >= entries_.size()) return {};
    return path(
        std::vector<path_entry>(entries_.begin() + static_cast<std::ptrdiff_t>(n), entries_.end()));
}

void path::throw_no_entry(std::size_t i) const {
    detail::throw_path("path::operator[]", *this, fmt::format("an entry index below {}", size()),
                       fmt::format("{}", i));
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
                    // `\xHH`: a control character as `keystr` prints it; `\uHHHH` and
                    // `\UHHHHHHHH`: a C1 control or format character, as UTF-8.
                    const std::size_t digits = text[i] == 'x'   ? 2
                                               : text[i] == 'u' ? 4
                                               : text[i] == 'U' ? 8
                                                                : 0;
                    std::uint32_t code = 0;
                    if (digits != 0 && i + digits < text.size() &&
                        std::from_chars(text.data() + i + 1, text.data() + i + 1 + digits, code, 16)
                                .ptr == text.data() + i + 1 + digits) {
                        if (digits == 2)
                            key += static_cast<char>(code);
                        else
                            append_utf8(key, code);
                        i += 1 + digits;
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
