// paramtree — checkpoints: safetensors files that store each tied value ONCE and restore the
// tie on load, atomic saves, loads that validate every byte, and .npy for single arrays.
//
// A file written by `save` is an ordinary safetensors file: tensor names are the dotted key
// paths of the pruned tree (`blocks.0.attn.q.weight`), and the header's `__metadata__`
// records the ties (`paramtree.ties`: tied name -> source name and transforms), the treedef
// text, and the whole structure (`paramtree.structure`), so `load_tree` rebuilds the tree
// and its ties without model code, and other tools can re-expand the ties.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/at.hpp>
#include <paramtree/npy.hpp> // save_npy, load_npy: declared here before 0.2
#include <paramtree/submodel.hpp>
#include <paramtree/tree.hpp>

namespace paramtree {

/// Saves `t` as safetensors at `file`, atomically: the bytes go to a temporary file next to
/// it, which is flushed, fsync'ed and renamed over `file`, so a crash or an error mid-save
/// leaves the old file intact (and the next save removes a dead writer's temporary). The
/// file keeps the permission bits of the file it replaces (a new one gets 0666 & ~umask); a
/// symbolic link at `file` is written through. Array leaves become tensors (each tied value
/// once); other leaves, static fields and ties go into the header. Throws io_error if the
/// file cannot be written, sharing_error for a tie through a callable get (it has no name to
/// save), format_error if two leaves or ties would get one tensor name, a name holds a
/// control character, or the header would exceed the 100 MB loaders accept.
///
///     pt::save("model.safetensors", lm);                 // tied embedding stored once
///     pt::tree back = pt::load("model.safetensors", lm); // same structure, tie restored
void save(const std::filesystem::path& file, const tree& t);

/// How a loaded file's bytes back the arrays.
enum class load_memory {
    /// Read the file into memory once (the default): the arrays own their bytes, and nothing
    /// that later happens to the file (truncation, an in-place rewrite, deletion) reaches them.
    copy,
    /// Map the file read-only and use its pages in place (zero-copy, shared with the page
    /// cache: fastest for large files). Only for files that nobody rewrites in place while
    /// the arrays live: truncating the file makes the next read of a page raise SIGBUS (the
    /// process dies), and an in-place write shows through the "immutable" arrays. `pt::save`
    /// never rewrites in place (it renames a new file over the old one), so files written by
    /// paramtree are safe to map; `cp` over a mapped file is not.
    map,
};

/// What `load`, `load_tree` and `load_arrays` accept besides an exact match.
struct load_options {
    /// A tensor in the file that `like` has no place for is an error (strict) or ignored.
    bool strict = true;
    /// Copy the file into memory (default) or map it (see `load_memory`).
    load_memory memory = load_memory::copy;
};

/// A tree with the structure of `like` (which also supplies non-array leaves and static
/// fields) whose arrays are read from `file`. Checks every tensor's presence, dtype and shape
/// against `like`, and the file's ties against `like`'s. A tie of `like` may be stored once
/// (the other name dropped, as safetensors' save_model does) or under both names (then both
/// copies must be equal). All mismatches are reported together, each by path, in one
/// format_error.
///
///     pt::save("model.safetensors", lm);
///     pt::tree back = pt::load("model.safetensors", lm);  // any tree of lm's structure will do
[[nodiscard]] tree load(const std::filesystem::path& file, const tree& like,
                        const load_options& options = {});

/// The tree a file written by `save` holds, ties included, rebuilt from the header alone (no
/// model code). Throws format_error for a file without paramtree's structure metadata.
/// (`options.strict` does not apply.)
[[nodiscard]] tree load_tree(const std::filesystem::path& file, const load_options& options = {});

/// Every tensor of any safetensors file, by name (files from other tools).
[[nodiscard]] std::map<std::string, array> load_arrays(const std::filesystem::path& file,
                                                       const load_options& options = {});

namespace detail {
using where_resolver = std::function<std::vector<path>(const tree&)>;
[[nodiscard]] tree load_extract_at(const std::filesystem::path& file, const where_resolver& where,
                                   outside_ties policy, const load_options& options);
} // namespace detail

/// The sub-model at `where` of the tree a file (or a sharded index) holds, reading only the
/// tensors the sub-model needs: `extract(load_tree(file), where, policy)` without the rest of
/// the model in memory. Ties inside the sub-model stay ties; a tie to a source outside it is
/// materialised (the source's tensor is read for it) or, with `outside_ties::refuse`, refused
/// with a sharing_error naming the tie. `where` is anything `extract` takes (a path, a
/// pattern selecting one node, a selector). With `load_memory::copy` (the default) the
/// sub-model owns copies of its tensors only; with `load_memory::map` it keeps the mapping.
/// Throws what `load_tree` throws, and path_error if `where` selects nothing or more than one
/// node.
///
///     auto enc = pt::record("Enc", {{"embed", pt::array::ones({4, 2})}});
///     auto dec = pt::record("Dec", {{"embed", pt::array::zeros({4, 2})},
///                                   {"out", pt::array::zeros({2})}});
///     auto m = pt::share(pt::record("Seq2Seq", {{"encoder", enc}, {"decoder", dec}}),
///                        ".decoder.embed", ".encoder.embed");
///     pt::save("seq2seq.safetensors", m);
///     pt::tree decoder = pt::load_extract("seq2seq.safetensors", ".decoder");
///     assert(pt::tree_equal(decoder, m["decoder"]));   // the tied embed materialised
///     std::filesystem::remove("seq2seq.safetensors");
template <where_spec W>
[[nodiscard]] tree load_extract(const std::filesystem::path& file, const W& where,
                                outside_ties policy = outside_ties::materialize,
                                const load_options& options = {}) {
    return detail::load_extract_at(
        file, [&](const tree& t) { return detail::resolve_where(where, t); }, policy, options);
}

/// The same three from bytes in memory (the arrays get their own copy of the data).
[[nodiscard]] tree load(std::span<const std::byte> bytes, const tree& like,
                        const load_options& options = {});
[[nodiscard]] tree load_tree(std::span<const std::byte> bytes);
[[nodiscard]] std::map<std::string, array> load_arrays(std::span<const std::byte> bytes);

} // namespace paramtree
