// paramtree — internal: the pieces of checkpoint writing that a sharded save (in the MPI
// layer, distributed.cpp) shares with `pt::save`: one safetensors writer and the structure
// metadata. Reading a sharded checkpoint is `pt::load_tree` / `pt::load` of its index.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/tree.hpp>

#include "structure_codec.hpp"

namespace paramtree::detail {

/// Writes `tensors` as a safetensors file, atomically (temporary, fsync, rename), with
/// `metadata` as the header's `__metadata__`. Throws io_error / format_error as `pt::save`.
void write_safetensors(const std::filesystem::path& file,
                       const std::vector<std::pair<std::string, array>>& tensors,
                       const std::map<std::string, std::string>& metadata);

/// What `pt::save` puts in `__metadata__` for `t`: the structure text `enc` holds, the ties
/// and the treedef, so the tree can be rebuilt without model code.
[[nodiscard]] std::map<std::string, std::string>
structure_metadata(const tree& t, const encoded_structure& enc, const std::string& context);

} // namespace paramtree::detail
