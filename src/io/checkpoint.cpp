// paramtree — checkpoints: trees saved as safetensors files (safetensors.cpp) with their
// structure (structure_codec.cpp) and ties in the header, loaded against a target or rebuilt
// without one, and sharded sets read through their index.
#include <paramtree/at.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/file_io.hpp>
#include <paramtree/detail/node.hpp>
#include <paramtree/detail/sharing.hpp>
#include "io/checkpoint_shards.hpp"
#include "io/safetensors.hpp"
#include "io/structure_codec.hpp"
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/treedef.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace paramtree {

static_assert(std::endian::native == std::endian::little,
              "safetensors and .npy data are little-endian; paramtree reads them in place");

namespace {

using json = nlohmann::json;
using detail::bad_file;
using detail::describe_json;
using detail::open_bytes;
using detail::open_file;
using detail::st_file;
using detail::st_tensor;
using detail::tensor_array;
using detail::tensor_name;

constexpr const char* structure_key = "paramtree.structure";
constexpr const char* ties_key = "paramtree.ties";

// ---- loading against a target ---------------------------------------------------------------

/// Everything wrong with a load, by tensor name, reported together in one format_error.
struct problem_list {
    std::vector<std::string> problems;
    std::string first_path;
    void operator()(const std::string& where, std::string what) {
        if (first_path.empty()) first_path = where;
        problems.push_back(where + ": " + std::move(what));
    }
    void throw_if_any(const std::string& source) {
        if (problems.empty()) return;
        // A resume into a model of another size can list hundreds: the first ten and a count.
        constexpr std::size_t shown = 10;
        const std::size_t total = problems.size();
        if (total > shown) problems.resize(shown);
        throw format_error(
            "load " + source, first_path, "a file matching the target",
            fmt::format(
                "{} problem{}: {}{}", total, total == 1 ? "" : "s", fmt::join(problems, "; "),
                total > shown ? fmt::format("; ... and {} more", total - shown) : std::string()));
    }
};

/// A header's `paramtree.ties` text (`{"tied name": {"source": name, "transforms": [...],
/// "from": path}}`, three levels) parsed and checked; an empty object where there is none.
json parse_ties(const std::string* text, const std::string& source) {
    if (!text) return json::object();
    const std::string where = std::string("__metadata__.") + ties_key;
    bool too_deep = false;
    json j = detail::parse_bounded(*text, 3, &too_deep);
    if (j.is_discarded() || !j.is_object())
        bad_file(source, where, "a JSON object",
                 too_deep ? "JSON nested deeper than 3 levels" : "invalid JSON");
    for (const auto& [tied, v] : j.items()) {
        if (!detail::valid_tensor_name(tied))
            bad_file(source, where, "tie names of plain UTF-8 (no control or format characters)",
                     fmt::format("'{}'", detail::escaped(tied)));
        if (!v.is_object() || !v.contains("source") || !v["source"].is_string())
            bad_file(source, where, "{source, transforms}", describe_json(v));
    }
    return j;
}

const std::string* metadata_entry(const st_file& f, const char* key) {
    const auto it = f.metadata.find(key);
    return it == f.metadata.end() ? nullptr : &it->second;
}

/// The ties a file written by paramtree records, tied name -> source name and transforms
/// (`enc.weight.T`); nullopt for a file without them (another tool's).
std::optional<std::map<std::string, std::string>> file_ties_of(const st_file& f) {
    const std::string* text = metadata_entry(f, ties_key);
    if (!text) return std::nullopt;
    std::map<std::string, std::string> file_ties;
    const json ties = parse_ties(text, f.source); // named: items() refers into it
    for (const auto& [tied, v] : ties.items()) {
        std::string name = v["source"].get<std::string>();
        if (v.contains("transforms") && v["transforms"].is_array())
            for (const auto& tr : v["transforms"])
                if (tr.is_string()) name += tr.get<std::string>();
        file_ties[tied] = std::move(name);
    }
    return file_ties;
}

/// The file's tensors by name (they are unique: the parser refuses duplicates).
std::map<std::string, const st_tensor*> tensors_by_name(const st_file& f) {
    std::map<std::string, const st_tensor*> out;
    for (const auto& t : f.tensors)
        out.emplace(t.name, &t);
    return out;
}

/// A file from another tool may hold a tied tensor under its own name too: true when `t` is
/// then a copy of the (transformed) source, or when that cannot be checked (the source
/// failed to load, or the tie's get is a callable).
bool is_copy_of_source(const st_file& f, const st_tensor& t, const tie_info& tie,
                       const std::map<std::string, array>& loaded) {
    const auto src = loaded.find(tensor_name(tie.source));
    if (src == loaded.end() || !tie.getter.empty()) return true;
    array expected = src->second;
    for (const auto& tr : tie.transforms)
        expected = tr.apply(expected);
    return t.dt == expected.dtype() && t.shape == expected.shape() &&
           array_equal(tensor_array(f, t), expected, 0, 0, /*equal_nan=*/true);
}

tree load_like(const st_file& f, const tree& like, const load_options& options) {
    const auto by_name = tensors_by_name(f);
    problem_list problem;
    std::set<std::string> used;

    auto [leaves, def] = flatten_with_path(like);
    std::vector<tree> out;
    out.reserve(leaves.size());
    std::map<std::string, array> loaded; // for checking duplicate copies of ties
    for (auto& [p, leaf] : leaves) {
        if (!leaf.is_array()) {
            out.push_back(leaf);
            continue;
        }
        const std::string name = tensor_name(p);
        const array& want = leaf.as_array();
        const auto it = by_name.find(name);
        if (it == by_name.end()) {
            problem(name, fmt::format("missing (expected {})", want.describe()));
            out.push_back(leaf);
            continue;
        }
        used.insert(name);
        const st_tensor& t = *it->second;
        if (t.dt != want.dtype() || t.shape != want.shape()) {
            problem(name,
                    fmt::format("expected {}, found {}", want.describe(), describe(t.dt, t.shape)));
            out.push_back(leaf);
            continue;
        }
        array a = tensor_array(f, t);
        loaded.emplace(name, a);
        out.emplace_back(std::move(a));
    }

    // Ties: the file's (when paramtree wrote it) against the target's.
    const auto recorded = file_ties_of(f);
    const std::map<std::string, std::string> file_ties = recorded.value_or(decltype(file_ties){});
    std::map<std::string, std::string> like_ties;
    for (const auto& tie : ties(like)) {
        std::string text = tensor_name(tie.source) + to_string(tie.transforms);
        const std::string name = tensor_name(tie.tied);
        like_ties[name] = text;
        if (recorded) {
            const auto ft = file_ties.find(name);
            if (ft == file_ties.end())
                problem(name,
                        fmt::format("the target ties it to {}, the file has no such tie", text));
            else if (ft->second != text)
                problem(name,
                        fmt::format("the file ties it to {}, the target to {}", ft->second, text));
        }
        const auto copy = by_name.find(name);
        if (copy == by_name.end()) continue;
        used.insert(name);
        if (!is_copy_of_source(f, *copy->second, tie, loaded))
            problem(name, fmt::format("holds a copy of the tied {} that differs from it", text));
    }
    for (const auto& [tied, source] : file_ties)
        if (!like_ties.contains(tied))
            problem(tied,
                    fmt::format("the file ties it to {}, the target has no such tie", source));

    if (options.strict)
        for (const auto& t : f.tensors)
            if (!used.contains(t.name))
                problem(t.name,
                        fmt::format("{} in the file has no place in the target (strict load)",
                                    describe(t.dt, t.shape)));
    problem.throw_if_any(f.source);
    return unflatten(def, std::move(out));
}

tree tree_of(const st_file& f) {
    const auto it = f.metadata.find(structure_key);
    if (it == f.metadata.end())
        bad_file(f.source, "__metadata__", "paramtree's structure (a file written by pt::save)",
                 "no paramtree.structure entry (use load(file, like) or load_arrays)");
    const auto by_name = tensors_by_name(f);
    return detail::decode_structure(
        it->second,
        [&](const std::string& name) {
            const auto t = by_name.find(name);
            if (t == by_name.end())
                bad_file(f.source, detail::escaped(name), "the tensor the structure names",
                         "no such tensor");
            return tensor_array(f, *t->second);
        },
        parse_ties(metadata_entry(f, ties_key), f.source), f.source);
}

std::map<std::string, array> arrays_of(const st_file& f) {
    std::map<std::string, array> out;
    for (const auto& t : f.tensors)
        out.emplace(t.name, tensor_array(f, t));
    return out;
}

} // namespace

namespace detail {
std::map<std::string, std::string> structure_metadata(const encoded_structure& enc) {
    return {{"format", "paramtree"}, {structure_key, enc.text}, {ties_key, enc.ties}};
}
} // namespace detail

void save(const std::filesystem::path& file, const tree& t) {
    const std::string context = file.string();
    const auto enc = detail::encode_structure(t, context);
    detail::write_safetensors(file, enc.tensors, detail::structure_metadata(enc));
}

// ---- sharded checkpoints -------------------------------------------------------------------

namespace {
/// A sharded checkpoint is named by its index, `*.json` (as `model.safetensors.index.json`).
bool is_index(const std::filesystem::path& file) {
    return file.extension() == ".json";
}

/// The tree a sharded checkpoint's index describes, its tensors read from the shard files
/// the index names (relative to the index's directory).
tree load_sharded_tree(const std::filesystem::path& index, const load_options& options) {
    const std::string source = index.string();
    const auto bytes = detail::read_file(index);
    bool too_deep = false;
    const json j = detail::parse_bounded(
        std::string_view(reinterpret_cast<const char*>(bytes.bytes.data()), bytes.bytes.size()), 8,
        &too_deep);
    const auto bad = [&](std::string where, std::string expected, std::string found) {
        throw format_error("sharded checkpoint " + source, std::move(where), std::move(expected),
                           std::move(found));
    };
    if (!j.is_object() || !j.contains("metadata") || !j["metadata"].is_object() ||
        !j.contains("weight_map") || !j["weight_map"].is_object())
        bad("", "an index with \"metadata\" and \"weight_map\" objects",
            too_deep ? "JSON nested too deeply" : detail::describe_json(j));
    const json& meta = j["metadata"];
    if (!meta.contains(structure_key) || !meta[structure_key].is_string())
        bad("metadata", "paramtree's structure (an index written by distributed::save_sharded)",
            "no paramtree.structure string");
    const std::string* ties_text = nullptr; // none: an index without ties
    if (const auto it = meta.find(ties_key); it != meta.end()) {
        if (!it->is_string())
            bad("metadata", "paramtree.ties as a string", detail::describe_json(*it));
        ties_text = it->get_ptr<const std::string*>();
    }
    const json ties = parse_ties(ties_text, source);
    // Each shard once, in any order; each tensor from the file the index names for it.
    struct shard {
        st_file file;
        std::map<std::string, const st_tensor*> tensors; // into file.tensors
    };
    std::map<std::string, shard> shards; // node-based: the pointers below stay valid
    std::map<std::string, std::pair<const st_file*, const st_tensor*>> where;
    for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string())
            bad(detail::escaped(name), "a shard file name", detail::describe_json(file));
        const std::string f = file.get<std::string>();
        if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
            bad(detail::escaped(name), "a file name next to the index", f);
        auto it = shards.find(f);
        if (it == shards.end()) {
            it = shards.emplace(f, shard{open_file(index.parent_path() / f, options.memory), {}})
                     .first;
            it->second.tensors = tensors_by_name(it->second.file);
        }
        const auto found = it->second.tensors.find(name);
        if (found == it->second.tensors.end())
            bad(detail::escaped(name), "the tensor in " + f, "no such tensor");
        where[name] = {&it->second.file, found->second};
    }
    return detail::decode_structure(
        meta[structure_key].get<std::string>(),
        [&](const std::string& name) {
            const auto t = where.find(name);
            if (t == where.end())
                bad(detail::escaped(name), "the tensor the structure names in the weight map",
                    "no such entry");
            return tensor_array(*t->second.first, *t->second.second);
        },
        ties, source);
}

/// `t` (loaded from `source`) checked against `like`: the same structure and, leaf by leaf,
/// the same dtype and shape; every difference reported by path in one format_error.
tree checked_against(const tree& t, const tree& like, const std::string& source) {
    if (!(paramtree::structure(t) == paramtree::structure(like)))
        throw format_error("sharded checkpoint " + source, "",
                           paramtree::structure(like).to_string() + " (the structure of like)",
                           paramtree::structure(t).to_string());
    const auto [got, def] = flatten_with_path(t);
    const auto want = leaves(like);
    std::vector<std::string> problems;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const tree& g = got[i].second;
        if (want[i].is_array() != g.is_array() ||
            (g.is_array() && (g.as_array().dtype() != want[i].as_array().dtype() ||
                              g.as_array().shape() != want[i].as_array().shape())))
            problems.push_back(fmt::format("{}: {} (expected {})", keystr(got[i].first),
                                           describe(g), describe(want[i])));
    }
    if (!problems.empty())
        throw format_error("sharded checkpoint " + source, "", "the dtypes and shapes of like",
                           fmt::format("{}", fmt::join(problems, "; ")));
    return t;
}
} // namespace

tree load(const std::filesystem::path& file, const tree& like, const load_options& options) {
    if (is_index(file))
        return checked_against(load_sharded_tree(file, options), like, file.string());
    return load_like(open_file(file, options.memory), like, options);
}
tree load_tree(const std::filesystem::path& file, const load_options& options) {
    if (is_index(file)) return load_sharded_tree(file, options);
    return tree_of(open_file(file, options.memory));
}
std::map<std::string, array> load_arrays(const std::filesystem::path& file,
                                         const load_options& options) {
    return arrays_of(open_file(file, options.memory));
}
namespace {
// `t` with each array leaf in a buffer of its own (leaves sharing a buffer still share the
// copy): a sub-model read from a whole-model file must not keep the whole file alive.
tree owned_copy(const tree& t) {
    std::map<const void*, array> copies; // by the storage of the loaded array
    return tree_map(
        [&](const tree& leaf) -> tree {
            if (!leaf.is_array()) return leaf;
            const array& a = leaf.as_array();
            const auto it = copies.find(a.storage_id());
            if (it != copies.end() && it->second.shape() == a.shape() &&
                it->second.dtype() == a.dtype())
                return it->second;
            auto fresh = detail::fresh_bytes(a.dtype(), a.shape());
            if (a.nbytes() != 0) std::memcpy(fresh.data, a.bytes(), a.nbytes());
            array copy = std::move(fresh.value);
            copies.insert_or_assign(a.storage_id(), copy);
            return copy;
        },
        t);
}
} // namespace

namespace detail {
tree load_extract_at(const std::filesystem::path& file, const where_resolver& where,
                     outside_ties policy, const load_options& options) {
    // The file is mapped whatever the caller asked: decoding the whole structure then costs
    // page-table entries, not reads, and only the sub-model's tensors are touched (copied
    // below for load_memory::copy).
    const load_options mapped{options.strict, load_memory::map};
    const tree whole = load_tree(file, mapped);
    const tree sub = extract_at(whole, where(whole), policy);
    return options.memory == load_memory::map ? sub : owned_copy(sub);
}
} // namespace detail

tree load(std::span<const std::byte> bytes, const tree& like, const load_options& options) {
    return load_like(open_bytes(bytes), like, options);
}
tree load_tree(std::span<const std::byte> bytes) {
    return tree_of(open_bytes(bytes));
}
std::map<std::string, array> load_arrays(std::span<const std::byte> bytes) {
    return arrays_of(open_bytes(bytes));
}

} // namespace paramtree
