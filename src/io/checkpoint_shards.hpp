// paramtree — internal: the pieces of checkpoint writing that a sharded save (in the MPI
// layer, distributed.cpp) shares with `pt::save`: the safetensors writer (safetensors.hpp)
// and the structure metadata. Reading a sharded checkpoint is `pt::load_tree` / `pt::load` of its
// index.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <paramtree/array.hpp>
#include <paramtree/tree.hpp>

#include "io/safetensors.hpp" // write_safetensors
#include "io/structure_codec.hpp"

namespace paramtree::detail {

/// What `pt::save` puts in `__metadata__`: the structure text and the ties `enc` holds (each
/// tie once), so the tree can be rebuilt without model code.
[[nodiscard]] std::map<std::string, std::string> structure_metadata(const encoded_structure& enc);

} // namespace paramtree::detail
