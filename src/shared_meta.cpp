// paramtree — equality, hashing and text of the sharing metadata (tie placeholders).
#include <paramtree/detail/sharing.hpp>

#include <fmt/format.h>

namespace paramtree::detail {

bool tie_meta_equal(const tie_meta& a, const tie_meta& b) {
    if (a.fn || b.fn) return a.fn == b.fn; // callables compare by identity
    return a.source == b.source && a.transforms == b.transforms;
}

bool shared_meta_equal(const shared_meta& a, const shared_meta& b) {
    return a.tags == b.tags;
}

std::string tie_text(const tie_meta& m) {
    if (m.fn) return fmt::format("@{}()", m.fn_name.empty() ? "get" : m.fn_name);
    std::string src = dotted(m.source);
    return fmt::format("@{}{}", src.empty() ? "<root>" : src, to_string(m.transforms));
}

} // namespace paramtree::detail
