// paramtree — path patterns: one text that names many positions of a tree.
//
// A pattern is a path whose entries may be wildcards:
//
//   .name  ['key']  [3]   one entry, as parse_path reads it (`layers.0.bias` too)
//   .*                    any one entry: a field, a dict key or an index
//   .**                   any number of entries, none included
//   [*]                   any index;  [a:b]  an index from a to b-1 (a or b may be left out)
//   .{q,k,v}              one of these names (fields or dict keys)
//
// `blocks[*].mlp`, `**.bias`, `blocks[0:4].attn.{q,k}.weight`. A pattern prints as it parses
// (`to_string`). `expand_pattern(t, p)` lists the positions of `t` it matches in flatten
// order; every function that takes a `where` (`share`, `select`, `tree_at`, `untie`,
// `extract`, `graft`) takes a pattern too, and `matches(path)` serves filters.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// A path pattern (see the top of this header for the grammar).
///
///     const pt::pattern p("blocks[0:2].attn.{q,k}.weight");
///     assert(p.to_string() == "blocks[0:2].attn.{q,k}.weight");
///     assert(p.matches(pt::parse_path("blocks[1].attn.k.weight")));
///     assert(!p.matches(pt::parse_path("blocks[2].attn.q.weight")));
class pattern {
public:
    /// One entry of a pattern.
    struct segment {
        enum class kind {
            exact,     ///< `entry` exactly (a field also matches the dict key it spells)
            any,       ///< `.*`: one entry of any kind
            any_depth, ///< `.**`: zero or more entries
            any_index, ///< `[*]`
            range,     ///< `[lo:hi]`, hi exclusive (`hi == npos`: no upper bound)
            names      ///< `.{a,b}`: a field or dict key among `names`
        };
        kind k = kind::exact;
        path_entry entry;
        std::size_t lo = 0, hi = npos;
        std::vector<std::string> names;
        static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    };

    /// Parses `text`. Throws path_error naming the offset of a syntax error.
    explicit pattern(std::string_view text);
    /// The pattern that matches exactly `p`.
    explicit pattern(const path& p);

    /// The text the pattern parses from.
    [[nodiscard]] std::string to_string() const;
    /// True when `p` is one of the positions the pattern names.
    [[nodiscard]] bool matches(const path& p) const;
    [[nodiscard]] const std::vector<segment>& segments() const noexcept { return segments_; }

    friend bool operator==(const pattern& a, const pattern& b) {
        return a.to_string() == b.to_string();
    }

private:
    std::vector<segment> segments_;
};

/// The positions of `t` that `p` matches, in flatten order (a Shared node is looked through;
/// a tied position is matched as a position, not looked into). Throws path_error naming the
/// pattern and the positions nearest to it when nothing matches.
///
///     auto t = pt::dict({{"blocks", pt::list({pt::dict({{"w", 1.0}, {"b", 2.0}}),
///                                             pt::dict({{"w", 3.0}, {"b", 4.0}})})}});
///     auto ws = pt::expand_pattern(t, pt::pattern("blocks[*].w"));
///     assert(ws.size() == 2 && ws[1] == pt::parse_path("['blocks'][1]['w']"));
///     assert(pt::expand_pattern(t, pt::pattern("**.b")).size() == 2);
[[nodiscard]] std::vector<path> expand_pattern(const tree& t, const pattern& p);

} // namespace paramtree
