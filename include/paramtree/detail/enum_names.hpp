// paramtree — internal: names of enumerators from a table indexed by their value, instead of
// one switch per enum (the enums are dense, starting at 0).
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace paramtree::detail {

/// `names[e]`, or "?" for a value outside the table (a corrupted enum: never UB).
template <class E, std::size_t N>
[[nodiscard]] constexpr std::string_view name_in(const std::array<std::string_view, N>& names,
                                                 E e) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < N ? names[i] : std::string_view("?");
}

} // namespace paramtree::detail
