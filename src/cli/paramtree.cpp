// paramtree — the `paramtree` command: inspect, verify, diff and dedupe checkpoint files
// (safetensors, with or without paramtree's structure, and sharded indexes) without writing
// code. Every subcommand takes --json for scripts. Exit codes: 0 success (files equal for
// diff), 1 the files differ (diff) or are invalid (verify, inspect), 2 bad usage.
//
// Files are mapped, not read: statistics and checks stream over the mapped tensors, so a
// 1 GiB file costs page cache, not a copy.
#include <paramtree/checkpoint.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/print.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/transform.hpp>

#include "io/structure_codec.hpp" // parse_bounded: the loader's JSON limits

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace pt = paramtree;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_differ = 1; // diff: the files differ; verify/inspect: a file is invalid
constexpr int exit_usage = 2;

const pt::load_options mapped{.strict = true, .memory = pt::load_memory::map};

/// Calls `f(span)` with the tensor's elements in their own type.
template <class F>
auto with_values(const pt::array& a, F&& f) {
    switch (a.dtype()) {
    case pt::dtype::float32:
        return f(a.values<float>());
    case pt::dtype::float64:
        return f(a.values<double>());
    case pt::dtype::int32:
        return f(a.values<std::int32_t>());
    case pt::dtype::int64:
        return f(a.values<std::int64_t>());
    case pt::dtype::boolean:
        return f(a.values<bool>());
    }
    return f(a.values<float>());
}

/// One pass over a tensor: range, mean, standard deviation (Welford), non-finite count.
struct stats {
    double min = std::numeric_limits<double>::quiet_NaN();
    double max = std::numeric_limits<double>::quiet_NaN();
    double mean = std::numeric_limits<double>::quiet_NaN();
    double std = std::numeric_limits<double>::quiet_NaN();
    std::size_t nonfinite = 0;
};

/// Mean and sum of squared deviations of a block, merged into the running ones (Chan et al.):
/// exact enough for any size, and the inner loops have no division, so they vectorise.
struct moments {
    double n = 0, mean = 0, m2 = 0;
    void merge(double nb, double mean_b, double m2_b) {
        if (nb == 0) return;
        const double total = n + nb, d = mean_b - mean;
        mean += d * nb / total;
        m2 += m2_b + d * d * n * nb / total;
        n = total;
    }
};

stats stats_of(const pt::array& a) {
    return with_values(a, [](auto values) {
        stats s;
        moments m;
        double lo = std::numeric_limits<double>::infinity(), hi = -lo;
        constexpr std::size_t block = 4096;
        double buf[block];
        for (std::size_t first = 0; first < values.size(); first += block) {
            const std::size_t end = std::min(values.size(), first + block);
            std::size_t k = 0;
            for (std::size_t i = first; i < end; ++i) {
                const double v = static_cast<double>(values[i]);
                if (!std::isfinite(v)) {
                    ++s.nonfinite;
                    continue;
                }
                buf[k++] = v;
            }
            double sum = 0;
            for (std::size_t i = 0; i < k; ++i) {
                sum += buf[i];
                lo = std::min(lo, buf[i]);
                hi = std::max(hi, buf[i]);
            }
            if (k == 0) continue;
            const double mean = sum / static_cast<double>(k);
            double m2 = 0;
            for (std::size_t i = 0; i < k; ++i)
                m2 += (buf[i] - mean) * (buf[i] - mean);
            m.merge(static_cast<double>(k), mean, m2);
        }
        if (m.n > 0) {
            s.min = lo;
            s.max = hi;
            s.mean = m.mean;
            s.std = std::sqrt(m.m2 / m.n);
        }
        return s;
    });
}

/// A 64-bit checksum of `n` bytes read word by word in four independent lanes (FNV-style
/// multiply-xor), so reading every byte costs about what the memory system delivers.
std::uint64_t checksum_of(const std::byte* p, std::size_t n, std::uint64_t h) {
    constexpr std::uint64_t prime = 1099511628211ULL;
    std::uint64_t lane[4] = {h, h ^ 1, h ^ 2, h ^ 3};
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) {
            std::uint64_t w;
            std::memcpy(&w, p + i + 8 * k, 8);
            lane[k] = (lane[k] ^ w) * prime;
        }
    for (; i < n; ++i)
        lane[0] = (lane[0] ^ static_cast<std::uint8_t>(p[i])) * prime;
    return ((lane[0] * prime ^ lane[1]) * prime ^ lane[2]) * prime ^ lane[3];
}

/// The JSON header of a safetensors file, or of a sharded index: what `inspect` reports about
/// the format. Null when the file is neither, or too deep to be one (the loader then says why).
json header_of(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::string text;
    if (file.extension() == ".json") {
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } else {
        std::uint64_t n = 0;
        if (!in.read(reinterpret_cast<char*>(&n), 8) || n > 100'000'000) return nullptr;
        text.resize(n);
        if (!in.read(text.data(), static_cast<std::streamsize>(n))) return nullptr;
    }
    // The library's bounded parse: a header nested too deeply is left to the loader, which
    // refuses it with its own message.
    const json j = pt::detail::parse_bounded(text, 64);
    return j.is_discarded() ? json(nullptr) : j;
}

/// The metadata of a header: a file's `__metadata__`, an index's `metadata`; null if none.
const json* metadata_of(const json& header) {
    if (!header.is_object()) return nullptr;
    const auto meta = header.find(header.contains("weight_map") ? "metadata" : "__metadata__");
    return meta != header.end() && meta->is_object() ? &*meta : nullptr;
}

/// Whether a header (of a file or an index) has paramtree's metadata (`paramtree.structure`,
/// `paramtree.ties`, ...): such a file is read as pt::save wrote it, with every check
/// `load_tree` makes.
bool has_structure(const json& header) {
    const json* meta = metadata_of(header);
    if (meta == nullptr) return false;
    for (const auto& [name, value] : meta->items())
        if (name.starts_with("paramtree.")) return true;
    return false;
}

/// "safetensors with paramtree structure format 3", "safetensors (no paramtree structure)".
std::string format_of(const json& header) {
    if (!header.is_object()) return "unknown";
    const char* kind = header.contains("weight_map") ? "sharded index" : "safetensors";
    const json* meta = metadata_of(header);
    const auto text = meta ? meta->find("paramtree.structure") : json::const_iterator();
    if (meta == nullptr || text == meta->end() || !text->is_string())
        return fmt::format("{} (no paramtree structure)", kind);
    // Bounded as decode_structure bounds it (format 1 nests two levels per tree level).
    const json s =
        pt::detail::parse_bounded(text->get_ref<const std::string&>(),
                                  2 * static_cast<int>(pt::detail::max_structure_depth) + 8);
    const int version = s.is_object() && s.contains("version") && s["version"].is_number()
                            ? s["version"].get<int>()
                            : 1;
    return fmt::format("{} with paramtree structure format {}", kind, version);
}

/// The tensors of a file by name: the stored ones of a paramtree tree (a tie once), or every
/// tensor of any other safetensors file.
struct file_view {
    json header;                  // the file's (or index's) header, read once
    std::optional<pt::tree> tree; // files written by pt::save or save_sharded
    std::map<std::string, pt::array> tensors;
};

/// `expanded`: every position by name, tied ones included (what the model reads), so a file
/// and its deduplicated copy compare equal; otherwise the stored tensors only.
file_view open_view(const fs::path& file, bool expanded) {
    file_view v;
    v.header = header_of(file);
    if (has_structure(v.header)) {
        v.tree = pt::load_tree(file, mapped);
        const pt::tree named = expanded ? pt::expand(*v.tree) : *v.tree;
        for (const auto& [p, leaf] : pt::flatten_with_path(named).leaves)
            if (leaf.is_array()) v.tensors.emplace(pt::dotted(p), leaf.as_array());
    } else {
        v.tensors = pt::load_arrays(file, mapped);
    }
    return v;
}

std::string shape_text(const pt::array& a) {
    return pt::describe(a.dtype(), a.shape());
}

std::string number(double v) {
    return std::isnan(v) ? "-" : fmt::format("{:.4g}", v);
}

json number_json(double v) {
    return std::isnan(v) ? json(nullptr) : json(v);
}

// ---- inspect ---------------------------------------------------------------------------------

int inspect(const fs::path& file, bool as_json) {
    const file_view v = open_view(file, false);
    std::size_t bytes = 0;
    for (const auto& [name, a] : v.tensors)
        bytes += a.nbytes();
    json out{{"file", file.string()}, {"format", format_of(v.header)}, {"tensors", json::array()}};
    std::size_t saved = 0;
    json ties = json::array();
    if (v.tree) {
        // Expanded once: each tied position's bytes are read off the one expansion (an
        // expansion per tie would be quadratic in the ties).
        const pt::tree full = pt::expand(*v.tree);
        for (const auto& t : pt::ties(*v.tree)) {
            std::size_t tied_bytes = 0;
            for (const auto& leaf : pt::leaves(full.at(t.tied)))
                if (leaf.is_array()) tied_bytes += leaf.as_array().nbytes();
            saved += tied_bytes;
            ties.push_back({{"tied", pt::keystr(t.tied)},
                            {"source", pt::keystr(t.source)},
                            {"transforms", t.transforms.empty() ? "" : pt::to_string(t.transforms)},
                            {"bytes_saved", tied_bytes}});
        }
        out["structure"] = pt::pformat(*v.tree);
    }
    out["ties"] = ties;
    out["bytes"] = bytes;
    out["bytes_saved_by_ties"] = saved;
    std::size_t nonfinite = 0;
    for (const auto& [name, a] : v.tensors) {
        const stats s = stats_of(a);
        nonfinite += s.nonfinite;
        out["tensors"].push_back({{"name", name},
                                  {"dtype", std::string(pt::dtype_name(a.dtype()))},
                                  {"shape", a.shape()},
                                  {"bytes", a.nbytes()},
                                  {"min", number_json(s.min)},
                                  {"max", number_json(s.max)},
                                  {"mean", number_json(s.mean)},
                                  {"std", number_json(s.std)},
                                  {"nonfinite", s.nonfinite}});
    }
    out["nonfinite"] = nonfinite;
    if (as_json) {
        std::cout << out.dump(2) << "\n";
        return exit_ok;
    }
    std::cout << fmt::format("{}: {}, {} tensors, {} bytes\n", file.string(),
                             out["format"].get<std::string>(), v.tensors.size(), bytes);
    if (v.tree) std::cout << "\n" << out["structure"].get<std::string>() << "\n";
    if (!ties.empty()) {
        std::cout << fmt::format("\n{} tie{} (each tied value stored once: {} bytes saved)\n",
                                 ties.size(), ties.size() == 1 ? "" : "s", saved);
        for (const auto& t : ties)
            std::cout << fmt::format("  {} = {}{}\n", t["tied"].get<std::string>(),
                                     t["source"].get<std::string>(),
                                     t["transforms"].get<std::string>().empty()
                                         ? ""
                                         : " through " + t["transforms"].get<std::string>());
    }
    std::size_t width = 6;
    for (const auto& t : out["tensors"])
        width = std::max(width, t["name"].get<std::string>().size());
    std::cout << fmt::format("\n{:<{}}  {:<14} {:>12} {:>10} {:>10} {:>10} {:>10} {:>9}\n",
                             "tensor", width, "dtype[shape]", "bytes", "min", "max", "mean", "std",
                             "non-finite");
    std::size_t row = 0;
    for (const auto& [name, a] : v.tensors) {
        const json& t = out["tensors"][row++];
        const auto num = [&](const char* key) {
            return t[key].is_null() ? std::string("-") : number(t[key].get<double>());
        };
        std::cout << fmt::format("{:<{}}  {:<14} {:>12} {:>10} {:>10} {:>10} {:>10} {:>9}\n", name,
                                 width, shape_text(a), a.nbytes(), num("min"), num("max"),
                                 num("mean"), num("std"), t["nonfinite"].get<std::size_t>());
    }
    if (nonfinite != 0)
        std::cout << fmt::format("\nwarning: {} NaN or infinite values\n", nonfinite);
    return exit_ok;
}

// ---- verify ----------------------------------------------------------------------------------

int verify(const fs::path& file, bool as_json) {
    // Everything the loader checks (header, names, offsets, dtypes, bool bytes, structure,
    // ties), then every byte of every tensor read once (a checksum no optimiser can drop).
    const file_view v = open_view(file, false);
    std::uint64_t checksum = 0;
    std::size_t bytes = 0;
    for (const auto& [name, a] : v.tensors) {
        checksum = checksum_of(a.bytes(), a.nbytes(), checksum);
        bytes += a.nbytes();
    }
    if (as_json)
        std::cout << json{{"file", file.string()},
                          {"valid", true},
                          {"tensors", v.tensors.size()},
                          {"bytes", bytes},
                          {"checksum", fmt::format("{:016x}", checksum)}}
                         .dump(2)
                  << "\n";
    else
        std::cout << fmt::format("{}: valid ({} tensors, {} bytes read, checksum {:016x})\n",
                                 file.string(), v.tensors.size(), bytes, checksum);
    return exit_ok;
}

// ---- diff ------------------------------------------------------------------------------------

struct tensor_diff {
    double max_abs = 0;
    double max_rel = 0;
    std::size_t differing = 0; // elements past the tolerance
};

tensor_diff compare(const pt::array& a, const pt::array& b, double rtol, double atol) {
    tensor_diff d;
    const auto x = a.to_doubles(); // one tensor at a time: bounded by the largest tensor
    const auto y = b.to_doubles();
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (std::isnan(x[i]) && std::isnan(y[i])) continue;
        const double abs = std::abs(x[i] - y[i]);
        const double rel = y[i] != 0 ? abs / std::abs(y[i]) : (abs == 0 ? 0 : INFINITY);
        d.max_abs = std::max(d.max_abs, std::isnan(abs) ? INFINITY : abs);
        d.max_rel = std::max(d.max_rel, std::isnan(rel) ? INFINITY : rel);
        if (!(abs <= atol + rtol * std::abs(y[i]))) ++d.differing;
    }
    return d;
}

int diff(const fs::path& a, const fs::path& b, double rtol, double atol, bool as_json) {
    const file_view va = open_view(a, true), vb = open_view(b, true);
    json out{{"a", a.string()},
             {"b", b.string()},
             {"rtol", rtol},
             {"atol", atol},
             {"only_in_a", json::array()},
             {"only_in_b", json::array()},
             {"mismatched", json::array()},
             {"tensors", json::array()},
             {"structure", nullptr}};
    bool differ = false;
    for (const auto& [name, x] : va.tensors)
        if (!vb.tensors.contains(name)) out["only_in_a"].push_back(name), differ = true;
    for (const auto& [name, y] : vb.tensors)
        if (!va.tensors.contains(name)) out["only_in_b"].push_back(name), differ = true;
    for (const auto& [name, x] : va.tensors) {
        const auto it = vb.tensors.find(name);
        if (it == vb.tensors.end()) continue;
        const pt::array& y = it->second;
        if (x.dtype() != y.dtype() || x.shape() != y.shape()) {
            out["mismatched"].push_back(
                {{"name", name}, {"a", shape_text(x)}, {"b", shape_text(y)}});
            differ = true;
            continue;
        }
        const tensor_diff d = compare(x, y, rtol, atol);
        differ = differ || d.differing != 0;
        out["tensors"].push_back({{"name", name},
                                  {"max_abs", d.max_abs},
                                  {"max_rel", d.max_rel},
                                  {"differing", d.differing}});
    }
    // Structure and ties, when both files have them.
    if (va.tree && vb.tree) {
        json s = json::array();
        for (const auto& d :
             pt::tree_diff(*va.tree, *vb.tree, {.rtol = INFINITY, .atol = INFINITY}))
            s.push_back({{"at", pt::keystr(d.where)},
                         {"kind", std::string(pt::diff_kind_name(d.kind))},
                         {"a", d.left},
                         {"b", d.right}});
        differ = differ || !s.empty();
        out["structure"] = s;
    }
    // One file with paramtree's structure and one without (a PyTorch file and its dedupe):
    // compared by name only, as said.
    out["compared_by"] = va.tree && vb.tree ? "names and structure" : "names";
    out["differ"] = differ;
    if (as_json) {
        std::cout << out.dump(2) << "\n";
        return differ ? exit_differ : exit_ok;
    }
    for (const auto& n : out["only_in_a"])
        std::cout << fmt::format("only in {}: {}\n", a.string(), n.get<std::string>());
    for (const auto& n : out["only_in_b"])
        std::cout << fmt::format("only in {}: {}\n", b.string(), n.get<std::string>());
    for (const auto& m : out["mismatched"])
        std::cout << fmt::format("{}: {} vs {}\n", m["name"].get<std::string>(),
                                 m["a"].get<std::string>(), m["b"].get<std::string>());
    if (out["structure"].is_array())
        for (const auto& d : out["structure"])
            std::cout << fmt::format("structure at {}: {} vs {}\n", d["at"].get<std::string>(),
                                     d["a"].get<std::string>(), d["b"].get<std::string>());
    for (const auto& t : out["tensors"])
        if (t["differing"].get<std::size_t>() != 0 || t["max_abs"].get<double>() != 0)
            std::cout << fmt::format("{}: max |a-b| {:.4g}, max relative {:.4g}, {} element{} past "
                                     "the tolerance\n",
                                     t["name"].get<std::string>(), t["max_abs"].get<double>(),
                                     t["max_rel"].get<double>(), t["differing"].get<std::size_t>(),
                                     t["differing"].get<std::size_t>() == 1 ? "" : "s");
    std::cout << (differ ? "the files differ" : "the files hold the same values")
              << fmt::format(" (compared by {}; {} tensors in common)\n",
                             out["compared_by"].get<std::string>(), out["tensors"].size());
    return differ ? exit_differ : exit_ok;
}

// ---- dedupe ----------------------------------------------------------------------------------

int dedupe(const fs::path& in, const fs::path& out_file, bool as_json) {
    // Every tensor by name (a PyTorch state_dict saved tensor by tensor stores a tied weight
    // under both names); equal tensors (dtype, shape and bytes) become one tie to the first
    // name in sorted order. The output keeps every name: a flat dict, one tie per duplicate.
    const auto tensors = pt::load_arrays(in, mapped);
    std::unordered_map<std::string, std::vector<std::string>> by_content; // hash key -> names
    std::map<std::string, std::string> tie_to;                            // name -> source
    for (const auto& [name, tensor] : tensors) {
        const pt::array& a = tensor; // named: clang 14 does not capture a structured binding
        const std::string_view data(reinterpret_cast<const char*>(a.bytes()), a.nbytes());
        const std::string key =
            fmt::format("{}|{}", shape_text(a), std::hash<std::string_view>{}(data));
        auto& names = by_content[key];
        const auto same = std::find_if(names.begin(), names.end(), [&](const std::string& n) {
            const pt::array& b = tensors.at(n);
            return b.nbytes() == a.nbytes() && std::memcmp(b.bytes(), a.bytes(), a.nbytes()) == 0;
        });
        if (same != names.end() && a.nbytes() != 0)
            tie_to[name] = *same;
        else
            names.push_back(name);
    }
    std::vector<std::pair<std::string, pt::tree>> items;
    for (const auto& [name, a] : tensors)
        items.emplace_back(name, pt::tree(a));
    pt::tree t = pt::dict(std::move(items));
    std::size_t saved = 0;
    if (!tie_to.empty()) {
        std::vector<pt::path> where;
        std::vector<pt::source> get;
        for (const auto& [name, source] : tie_to) {
            where.push_back(pt::path{pt::dict_key{name}});
            get.emplace_back(pt::path{pt::dict_key{source}});
            saved += tensors.at(name).nbytes();
        }
        t = pt::share(t, where, get);
    }
    pt::save(out_file, t);
    const std::size_t before = fs::file_size(in), after = fs::file_size(out_file);
    json ties = json::array();
    for (const auto& [name, source] : tie_to)
        ties.push_back({{"tied", name}, {"source", source}});
    if (as_json) {
        std::cout << json{{"in", in.string()},
                          {"out", out_file.string()},
                          {"ties", ties},
                          {"tensor_bytes_saved", saved},
                          {"file_bytes_before", before},
                          {"file_bytes_after", after}}
                         .dump(2)
                  << "\n";
        return exit_ok;
    }
    for (const auto& [name, source] : tie_to)
        std::cout << fmt::format("{} = {} (equal: stored once)\n", name, source);
    std::cout << fmt::format("{} -> {}: {} tie{}, {} tensor bytes saved; file {} -> {} bytes\n",
                             in.string(), out_file.string(), tie_to.size(),
                             tie_to.size() == 1 ? "" : "s", saved, before, after);
    return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"paramtree: inspect, verify, diff and dedupe checkpoint files (safetensors, "
                 "sharded indexes)"};
    app.require_subcommand(1);
    bool as_json = false;
    app.add_flag("--json", as_json, "print JSON (every subcommand)");

    std::string file, other, out_file;
    double rtol = 0, atol = 0;
    // A subcommand with its --json flag and its first file (which must exist).
    const auto subcommand = [&](const char* name, const char* what, const char* file_name,
                                const char* file_help) {
        CLI::App* cmd = app.add_subcommand(name, what);
        cmd->add_option(file_name, file, file_help)->required()->check(CLI::ExistingFile);
        cmd->add_flag("--json", as_json, "print JSON");
        return cmd;
    };
    const char* any_file = "a .safetensors file or a sharded index (.json)";
    CLI::App* inspect_cmd = subcommand(
        "inspect", "structure, ties and what they save, tensors with statistics, NaN/Inf scan",
        "FILE", any_file);
    CLI::App* verify_cmd = subcommand(
        "verify", "everything the loader checks, then every byte read; exit 1 if invalid", "FILE",
        any_file);
    CLI::App* diff_cmd =
        subcommand("diff", "compare two files by tensor name and structure; exit 1 if they differ",
                   "A", "first file");
    diff_cmd->add_option("B", other, "second file")->required()->check(CLI::ExistingFile);
    diff_cmd->add_option("--rtol", rtol, "relative tolerance (|a - b| <= atol + rtol |b|)")
        ->check(CLI::NonNegativeNumber);
    diff_cmd->add_option("--atol", atol, "absolute tolerance")->check(CLI::NonNegativeNumber);
    CLI::App* dedupe_cmd =
        subcommand("dedupe", "write a paramtree file where equal tensors are one tie, stored once",
                   "IN", "a .safetensors file");
    dedupe_cmd->add_option("OUT", out_file, "the file to write")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? exit_ok : exit_usage;
    }
    try {
        if (*inspect_cmd) return inspect(file, as_json);
        if (*verify_cmd) return verify(file, as_json);
        if (*diff_cmd) return diff(file, other, rtol, atol, as_json);
        if (*dedupe_cmd) return dedupe(file, out_file, as_json);
    } catch (const pt::error& e) {
        // An invalid file: the loader's message names the file, the place and what was wrong.
        if (as_json)
            std::cout << json{{"file", file}, {"valid", false}, {"error", e.what()}}.dump(2)
                      << "\n";
        else
            std::cerr << "paramtree: " << e.what() << "\n";
        return exit_differ;
    }
    return exit_usage;
}
