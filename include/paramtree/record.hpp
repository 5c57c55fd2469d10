// paramtree — registering C++ structs as Records, and converting values to and from trees.
// Registration is a trait specialisation resolved at compile time (no run-time registry):
//
//     struct Linear { pt::array weight, bias; std::int64_t in_features, out_features; };
//     template <> struct pt::record_traits<Linear> {
//         static constexpr std::string_view name = "Linear";
//         static constexpr auto fields = std::tuple{pt::field("weight", &Linear::weight),
//                                                   pt::field("bias", &Linear::bias)};
//         static constexpr auto static_fields = std::tuple{
//             pt::field("in_features", &Linear::in_features),
//             pt::field("out_features", &Linear::out_features)};
//     };
//     pt::tree t = pt::to_tree(lin);            // Linear(weight=f32[..], bias=f32[..], ...)
//     Linear back = pt::from_tree<Linear>(t);
#pragma once

#include <concepts>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/error.hpp>
#include <paramtree/path.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// Specialise for a struct to make it a Record: `name`, `fields` (tuple of `field(...)`) and
/// optionally `static_fields` (values convertible to static_value, part of the treedef).
template <class T>
struct record_traits;

/// A named pointer to a data member.
template <class C, class M>
struct field_ref {
    std::string_view name;
    M C::*member;
};
template <class C, class M>
[[nodiscard]] constexpr field_ref<C, M> field(std::string_view name, M C::*member) {
    return {name, member};
}

template <class T>
concept registered_record = requires {
    { record_traits<T>::name } -> std::convertible_to<std::string_view>;
    record_traits<T>::fields;
};

/// How a C++ type converts to and from a tree. Specialise for further types.
template <class T, class = void>
struct tree_codec;

/// Types `to_tree` / `from_tree` accept.
template <class T>
concept tree_convertible = requires(const T& v, const tree& t, const path& p) {
    { tree_codec<T>::encode(v) } -> std::same_as<tree>;
    { tree_codec<T>::decode(t, p) } -> std::same_as<T>;
};

/// The tree of a value: records for registered structs, lists for vectors, dicts for
/// string maps, tuples for std::tuple/pair, None for an empty optional, leaves for arrays,
/// numbers and strings.
template <tree_convertible T>
[[nodiscard]] tree to_tree(const T& value) {
    return tree_codec<T>::encode(value);
}

/// The value of a tree. Throws structure_error / leaf_error naming the path that does not fit.
template <tree_convertible T>
[[nodiscard]] T from_tree(const tree& t) {
    return tree_codec<T>::decode(t, path{});
}

namespace detail {
[[noreturn]] void throw_decode(const path& p, std::string expected, const tree& found);
template <class T>
T decode_static(const static_value& v, const path& p, std::string_view type) {
    if constexpr (std::same_as<T, bool>) {
        if (v.holds<bool>()) return std::get<bool>(v.get());
    } else if constexpr (std::integral<T>) {
        if (v.holds<std::int64_t>()) return static_cast<T>(std::get<std::int64_t>(v.get()));
    } else if constexpr (std::floating_point<T>) {
        if (v.holds<double>()) return static_cast<T>(std::get<double>(v.get()));
        if (v.holds<std::int64_t>()) return static_cast<T>(std::get<std::int64_t>(v.get()));
    } else if constexpr (std::same_as<T, std::string>) {
        if (v.holds<std::string>()) return std::get<std::string>(v.get());
    }
    throw leaf_error("from_tree", keystr(p),
                     std::string("a static value of type ") + std::string(type), v.to_string());
}
} // namespace detail

template <>
struct tree_codec<tree> {
    static tree encode(const tree& t) { return t; }
    static tree decode(const tree& t, const path&) { return t; }
};

template <>
struct tree_codec<array> {
    static tree encode(const array& a) { return a; }
    static array decode(const tree& t, const path& p) {
        if (!t.is_array()) detail::throw_decode(p, "an array leaf", t);
        return t.as_array();
    }
};

template <class T>
struct tree_codec<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
    static tree encode(const T& v) {
        if constexpr (std::same_as<T, bool> || std::integral<T>)
            return tree(v);
        else
            return tree(static_cast<double>(v));
    }
    static T decode(const tree& t, const path& p) {
        if (t.is_leaf()) {
            const auto& v = t.value();
            if constexpr (std::same_as<T, bool>) {
                if (const auto* b = std::get_if<bool>(&v)) return *b;
            } else if constexpr (std::integral<T>) {
                if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<T>(*i);
            } else {
                if (const auto* d = std::get_if<double>(&v)) return static_cast<T>(*d);
                if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<T>(*i);
            }
        }
        detail::throw_decode(p,
                             std::same_as<T, bool> ? "a bool leaf"
                             : std::integral<T>    ? "an integer leaf"
                                                   : "a number leaf",
                             t);
    }
};

template <>
struct tree_codec<std::string> {
    static tree encode(const std::string& s) { return s; }
    static std::string decode(const tree& t, const path& p) {
        if (!t.is_leaf() || !std::holds_alternative<std::string>(t.value()))
            detail::throw_decode(p, "a string leaf", t);
        return t.as<std::string>();
    }
};

template <tree_convertible T>
struct tree_codec<std::vector<T>> {
    static tree encode(const std::vector<T>& v) {
        std::vector<tree> items;
        items.reserve(v.size());
        for (const auto& x : v)
            items.push_back(tree_codec<T>::encode(x));
        return list(std::move(items));
    }
    static std::vector<T> decode(const tree& t, const path& p) {
        if (t.kind() != node_kind::list) detail::throw_decode(p, "a list", t);
        std::vector<T> out;
        out.reserve(t.size());
        for (std::size_t i = 0; i < t.size(); ++i)
            out.push_back(tree_codec<T>::decode(t.child(i), p / i));
        return out;
    }
};

template <tree_convertible T>
struct tree_codec<std::map<std::string, T>> {
    static tree encode(const std::map<std::string, T>& m) {
        std::vector<std::pair<std::string, tree>> items;
        for (const auto& [k, v] : m)
            items.emplace_back(k, tree_codec<T>::encode(v));
        return dict(std::move(items));
    }
    static std::map<std::string, T> decode(const tree& t, const path& p) {
        if (t.kind() != node_kind::dict) detail::throw_decode(p, "a dict", t);
        std::map<std::string, T> out;
        for (const auto& k : t.keys())
            out.emplace(k, tree_codec<T>::decode(t[k], p / dict_key{k}));
        return out;
    }
};

template <tree_convertible T>
struct tree_codec<std::optional<T>> {
    static tree encode(const std::optional<T>& v) { return v ? tree_codec<T>::encode(*v) : tree{}; }
    static std::optional<T> decode(const tree& t, const path& p) {
        if (t.is_none()) return std::nullopt;
        return tree_codec<T>::decode(t, p);
    }
};

template <tree_convertible... Ts>
struct tree_codec<std::tuple<Ts...>> {
    static tree encode(const std::tuple<Ts...>& v) {
        return std::apply([](const auto&... x) { return tuple({tree_codec<Ts>::encode(x)...}); },
                          v);
    }
    static std::tuple<Ts...> decode(const tree& t, const path& p) {
        if (t.kind() != node_kind::tuple || t.size() != sizeof...(Ts))
            detail::throw_decode(p, "a tuple of length " + std::to_string(sizeof...(Ts)), t);
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            return std::tuple<Ts...>{tree_codec<Ts>::decode(t.child(I), p / I)...};
        }
        (std::index_sequence_for<Ts...>{});
    }
};

template <registered_record T>
struct tree_codec<T> {
    using traits = record_traits<T>;
    static constexpr auto statics() {
        if constexpr (requires { traits::static_fields; })
            return traits::static_fields;
        else
            return std::tuple<>{};
    }
    static tree encode(const T& v) {
        std::vector<std::pair<std::string, tree>> fields;
        std::apply(
            [&](const auto&... f) {
                (fields.emplace_back(std::string(f.name), to_tree(v.*(f.member))), ...);
            },
            traits::fields);
        std::vector<std::pair<std::string, static_value>> st;
        std::apply(
            [&](const auto&... f) {
                (st.emplace_back(std::string(f.name), static_value(v.*(f.member))), ...);
            },
            statics());
        return record(std::string(traits::name), std::move(fields), std::move(st));
    }
    static T decode(const tree& t, const path& p) {
        if (t.kind() != node_kind::record || t.record_name() != traits::name)
            detail::throw_decode(p, "a " + std::string(traits::name) + " record", t);
        T out{};
        std::apply(
            [&](const auto&... f) {
                ((out.*(f.member) =
                      tree_codec<std::remove_cvref_t<decltype(out.*(f.member))>>::decode(
                          t[f.name], p / field_key{std::string(f.name)})),
                 ...);
            },
            traits::fields);
        std::apply(
            [&](const auto&... f) {
                ((out.*(f.member) =
                      detail::decode_static<std::remove_cvref_t<decltype(out.*(f.member))>>(
                          t.static_field(f.name), p / field_key{std::string(f.name)}, f.name)),
                 ...);
            },
            statics());
        return out;
    }
};

} // namespace paramtree
