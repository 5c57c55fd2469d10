// paramtree — a record's static field value: part of a tree's structure (its treedef), not of
// its leaves, like an Equinox module's static fields.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace paramtree {

/// A record's static (non-leaf) field value: part of the structure, not of the leaves.
class static_value {
public:
    using variant_type = std::variant<bool, std::int64_t, double, std::string>;
    static_value() : value_(std::int64_t{0}) {}
    static_value(bool v) : value_(v) {}
    template <std::integral T>
    requires(!std::same_as<T, bool>) static_value(T v) : value_(static_cast<std::int64_t>(v)) {}
    static_value(double v) : value_(v) {}
    static_value(float v) : value_(static_cast<double>(v)) {}
    static_value(std::string v) : value_(std::move(v)) {}
    static_value(const char* v) : value_(std::string(v)) {}

    [[nodiscard]] const variant_type& get() const noexcept { return value_; }
    template <class T>
    [[nodiscard]] bool holds() const noexcept {
        return std::holds_alternative<T>(value_);
    }
    /// Python-like text: `64`, `0.5`, `true`, `'gelu'`.
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const static_value&, const static_value&) = default;

private:
    variant_type value_;
};

} // namespace paramtree
