// paramtree — single arrays as numpy `.npy` files, for exchange with numpy and tools that read
// it (a tree goes to a safetensors checkpoint: <paramtree/checkpoint.hpp>).
#pragma once

#include <filesystem>

#include <paramtree/array.hpp>

namespace paramtree {

/// One array as a numpy `.npy` file (format 1.0, little-endian), written atomically.
///
///     pt::save_npy("w.npy", pt::array::arange(6).reshape({2, 3}));
///     assert(pt::array_equal(pt::load_npy("w.npy"), pt::array::arange(6).reshape({2, 3})));
void save_npy(const std::filesystem::path& file, const array& a);
/// Reads a `.npy` file: float32/64, int32/64 and bool, either byte order, C or Fortran
/// order (returned row-major). Throws format_error for anything else, naming what it found.
[[nodiscard]] array load_npy(const std::filesystem::path& file);

} // namespace paramtree
