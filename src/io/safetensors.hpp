// paramtree — internal to src/: the safetensors format. Reading parses and checks a header
// and its tensors (every offset, size and dtype) over memory that a file mapping, a file read
// or a caller's bytes own; writing lays out a header and the tensors and saves atomically.
// What the tensors mean (trees, ties, the structure metadata) is checkpoint.cpp's.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/checkpoint.hpp>

namespace paramtree::detail {

/// What loaders accept (the reference implementation's limit), and so what `save` writes.
inline constexpr std::size_t max_header = 100'000'000;

struct st_tensor {
    std::string name;
    dtype dt = dtype::float32;
    shape_type shape;
    std::size_t begin = 0, end = 0;
};

struct st_file {
    std::string source;             // the file name, for messages
    std::vector<st_tensor> tensors; // in offset order
    std::map<std::string, std::string> metadata;
    bool has_metadata = false;
    const std::byte* data = nullptr;
    std::size_t data_size = 0;
    std::shared_ptr<const void> owner; // keeps `data` alive
};

/// Throws format_error "safetensors <source>" at tensor `where`.
[[noreturn]] void bad_file(const std::string& source, const std::string& where,
                           std::string expected, std::string found);

/// Parses and checks `bytes` (alive as long as `owner`) as a safetensors file.
[[nodiscard]] st_file parse(std::span<const std::byte> bytes, std::shared_ptr<const void> owner,
                            std::string source);
/// A file, mapped or copied into memory (`memory`), parsed.
[[nodiscard]] st_file open_file(const std::filesystem::path& file, load_memory memory);
/// A caller's bytes, copied into one aligned buffer the arrays keep alive, parsed.
[[nodiscard]] st_file open_bytes(std::span<const std::byte> bytes);
/// Tensor `t` of `f` as an array: zero-copy on the file's memory when aligned for its dtype,
/// else copied. Bool bytes must be 0 or 1.
[[nodiscard]] array tensor_array(const st_file& f, const st_tensor& t);

/// Writes `tensors` as a safetensors file, atomically (temporary, fsync, rename), with
/// `metadata` as the header's `__metadata__`. Throws io_error / format_error as `pt::save`.
void write_safetensors(const std::filesystem::path& file,
                       const std::vector<std::pair<std::string, array>>& tensors,
                       const std::map<std::string, std::string>& metadata);

} // namespace paramtree::detail
