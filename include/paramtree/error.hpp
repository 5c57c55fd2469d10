// paramtree — the exception hierarchy: one catchable base, one class per kind of failure.
// Every error raised on user input derives from paramtree::error and names the key path
// in the tree where it happened, what was expected there and what was found.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <paramtree/path.hpp>

namespace paramtree {

/// Base of every exception paramtree throws on bad input.
///
/// `path()` is the key path where the problem is, as `keystr` prints it: `['layers'][3].weight`;
/// messages print the empty path as \<root\>. `where()` is the same place as a `pt::path` when
/// it is a place in a tree (not for a place in a file, such as a header field), so a caller
/// can prefix it with where its own tree sits, or compare it, without parsing the text.
/// `expected()` and `found()` describe both sides. `what()` holds the full message.
///
///     auto [too_few, def] = pt::flatten(t);
///     too_few.pop_back();
///     try { (void)pt::unflatten(def, too_few); }
///     catch (const pt::error& e) { std::cerr << e.what(); }
class error : public std::runtime_error {
public:
    error(std::string context, std::string path, std::string expected, std::string found);
    /// The same for a place in a tree, kept as a path object too (`where()`).
    error(std::string context, paramtree::path where, std::string expected, std::string found);
    /// Tag of the constructor for a value whose place in a tree is not known where the error
    /// is raised (a leaf read from a subtree handle): the message names no path.
    struct unlocated_t {
        explicit unlocated_t() = default;
    };
    error(unlocated_t, std::string context, std::string expected, std::string found);

    [[nodiscard]] const std::string& context() const noexcept { return context_; }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// The place as a path, when the error was raised for a place in a tree.
    ///
    ///     const pt::tree enc = pt::dict({{"enc", pt::dict({{"w", pt::array{1.0}}})}});
    ///     try { (void)enc.at(pt::parse_path("['enc']['b']")); }
    ///     catch (const pt::path_error& e) { // at ['enc']: no key 'b' there
    ///         assert(e.where() && *e.where() == pt::parse_path("['enc']"));
    ///         const pt::path in_model = pt::parse_path(".model") / *e.where(); // no parsing
    ///         assert(pt::keystr(in_model) == ".model['enc']");
    ///     }
    [[nodiscard]] const std::optional<paramtree::path>& where() const noexcept { return where_; }
    [[nodiscard]] const std::string& expected() const noexcept { return expected_; }
    [[nodiscard]] const std::string& found() const noexcept { return found_; }

private:
    std::string context_;
    std::string path_;
    std::optional<paramtree::path> where_;
    std::string expected_;
    std::string found_;
};

/// Two trees (or a tree and a treedef) differ in structure: kind, length, keys, fields, ties.
class structure_error : public error {
    using error::error;
};

/// A path does not exist in the tree, is malformed, or selects something it cannot.
class path_error : public error {
    using error::error;
};

/// The number of leaves given does not match the treedef.
class leaf_count_error : public error {
    using error::error;
};

/// A leaf has the wrong type, dtype or shape (e.g. a string where an array was expected).
class leaf_error : public error {
    using error::error;
};

/// Array operands whose shapes or dtypes cannot be combined.
class shape_error : public error {
    using error::error;
};

/// A tie (Shared, reference, alias) is inconsistent: counts, shapes, cycles, split groups.
class sharing_error : public error {
    using error::error;
};

/// A file or byte stream is malformed (checkpoints, .npy).
class format_error : public error {
    using error::error;
};

/// Reading or writing a file failed (the operating system's reason is in `found()`).
class io_error : public error {
    using error::error;
};

/// A value outside what an operation accepts: a NaN or infinite gradient norm under
/// `nonfinite_policy::error`, a non-finite loss where the caller asked for a check.
class value_error : public error {
    using error::error;
};

/// A broken invariant inside paramtree (a bug, never bad input): the message names the source
/// file and line that found it, so that it can be reported. Raised instead of undefined
/// behaviour or a bare `std::bad_variant_access`.
class internal_error : public error {
    using error::error;
};

/// Text of a path for messages: \<root\> for the empty path.
[[nodiscard]] std::string display_path(const std::string& keystr);

} // namespace paramtree
