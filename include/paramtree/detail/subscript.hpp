// paramtree — internal: the convenience overloads of `operator[]` that tree and selector
// share. A class provides `operator[](std::size_t)` and `operator[](std::string_view)`; this
// base adds any other integer (not bool) and C strings, forwarding to them.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

namespace paramtree::detail {

template <class Derived, class Result>
class subscript_sugar {
public:
    /// Element `i`, for any integer type (`t[0]`, `t[k]` with an int k).
    template <std::integral T>
    requires(!std::same_as<T, bool>) [[nodiscard]] Result operator[](T i) const {
        return self()[static_cast<std::size_t>(i)];
    }
    /// Entry `name`, for a string literal (`t["weight"]`).
    [[nodiscard]] Result operator[](const char* name) const {
        return self()[std::string_view(name)];
    }

private:
    [[nodiscard]] const Derived& self() const noexcept {
        return static_cast<const Derived&>(*this);
    }
};

} // namespace paramtree::detail
