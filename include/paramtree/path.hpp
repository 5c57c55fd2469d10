// paramtree — key paths: how a node is addressed from the root of a tree.
// A path is a sequence of entries: a sequence index `[3]`, a dict key `['layers']` or a record
// field `.weight`. `keystr` prints the JAX-style text and `parse_path` reads it back.
#pragma once

#include <compare>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace paramtree {

/// `[i]`: position in a list or tuple.
struct index_key {
    std::size_t index;
    friend auto operator<=>(const index_key&, const index_key&) = default;
};
/// `['name']`: a dict key.
struct dict_key {
    std::string key;
    friend auto operator<=>(const dict_key&, const dict_key&) = default;
};
/// `.name`: a record field.
struct field_key {
    std::string name;
    friend auto operator<=>(const field_key&, const field_key&) = default;
};

using path_entry = std::variant<index_key, dict_key, field_key>;

/// A key path from the root of a tree.
///
///     pt::path p = pt::path{} / pt::dict_key{"layers"} / 3 / pt::field_key{"weight"};
///     assert(pt::keystr(p) == "['layers'][3].weight");
class path {
public:
    path() = default;
    path(std::initializer_list<path_entry> entries) : entries_(entries) {}
    explicit path(std::vector<path_entry> entries) : entries_(std::move(entries)) {}

    [[nodiscard]] const std::vector<path_entry>& entries() const noexcept { return entries_; }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
    /// Entry `i`. Throws path_error when the path is shorter.
    [[nodiscard]] const path_entry& operator[](std::size_t i) const {
        if (i >= entries_.size()) throw_no_entry(i);
        return entries_[i];
    }
    [[nodiscard]] auto begin() const noexcept { return entries_.begin(); }
    [[nodiscard]] auto end() const noexcept { return entries_.end(); }

    /// The path extended by one entry.
    [[nodiscard]] path operator/(path_entry e) const& {
        path p = *this;
        p.entries_.push_back(std::move(e));
        return p;
    }
    [[nodiscard]] path operator/(path_entry e) && {
        entries_.push_back(std::move(e));
        return std::move(*this);
    }
    [[nodiscard]] path operator/(std::size_t i) const& { return *this / path_entry{index_key{i}}; }
    [[nodiscard]] path operator/(std::size_t i) && {
        return std::move(*this) / path_entry{index_key{i}};
    }
    /// The path extended by all entries of `tail`.
    [[nodiscard]] path operator/(const path& tail) const;

    /// The first `n` entries.
    [[nodiscard]] path prefix(std::size_t n) const;
    /// The entries from `n` on (empty when `n` is the length or more): where `prefix(n)` leads.
    ///
    ///     assert(pt::parse_path("a.b.c").suffix(1) == pt::parse_path("b.c"));
    [[nodiscard]] path suffix(std::size_t n) const;
    /// True when `other` starts with all entries of this path.
    [[nodiscard]] bool is_prefix_of(const path& other) const noexcept;

    void push_back(path_entry e) { entries_.push_back(std::move(e)); }
    void pop_back() { entries_.pop_back(); }

    friend auto operator<=>(const path&, const path&) = default;

private:
    [[noreturn]] void throw_no_entry(std::size_t i) const;
    std::vector<path_entry> entries_;
};

/// JAX-style text: `['layers'][3].weight`; the empty path prints as an empty string.
[[nodiscard]] std::string keystr(const path& p);
namespace detail {
/// `s` with `quote` and backslashes escaped, control characters and bytes that are not UTF-8
/// as `\xHH`, C1 controls and Unicode format characters (bidi overrides, zero-width
/// characters) as `\uHHHH` / `\UHHHHHHHH`: as `keystr` prints dict keys (parse_path reads it
/// back), so a printed name shows every character and obeys none.
[[nodiscard]] std::string escaped(std::string_view s, char quote = '\'');
/// A dict key as keystr and the printers quote it: Python's repr rule (`'a'`, `"it's"`).
[[nodiscard]] std::string quoted(std::string_view key);
/// What utf8_at returns for a byte that does not start a valid UTF-8 sequence.
inline constexpr char32_t invalid_utf8 = 0xffffffff;
/// The code point at byte `i` of `s` (i < s.size()) and its length in bytes: `invalid_utf8`
/// and 1 for a byte that does not start one (overlong forms and surrogates included).
[[nodiscard]] std::pair<char32_t, std::size_t> utf8_at(std::string_view s, std::size_t i) noexcept;
/// Unicode general category Cf (format characters: U+202E, U+200B, U+FEFF, ...).
[[nodiscard]] bool is_format_char(char32_t cp) noexcept;
/// Valid UTF-8 without control (C0, DEL, C1) or format characters: a name a terminal shows as
/// it is.
[[nodiscard]] bool is_plain_text(std::string_view s) noexcept;
/// `[A-Za-z_][A-Za-z0-9_]*`: what a record field name must be, and what `parse_path` reads as
/// a field in dotted text. One rule for both, so `.name` always means exactly that field.
[[nodiscard]] bool is_identifier(std::string_view s) noexcept;
} // namespace detail
/// Dotted text used for tensor names in checkpoints: `layers.3.weight`.
[[nodiscard]] std::string dotted(const path& p);
/// Reads `keystr` text back. Throws path_error naming the position of a syntax error.
///
///     assert((pt::parse_path("['a'][0].w") ==
///             pt::path{pt::dict_key{"a"}, pt::index_key{0}, pt::field_key{"w"}}));
///     assert(pt::parse_path("layers.0.bias") == pt::parse_path(".layers[0].bias"));
[[nodiscard]] path parse_path(std::string_view text);
/// Text of one entry: `[3]`, `['a']` or `.w`.
[[nodiscard]] std::string entry_str(const path_entry& e);

} // namespace paramtree
