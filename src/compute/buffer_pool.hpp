// paramtree — internal: the buffer cache behind array storage (<paramtree/memory.hpp>).
#pragma once

#include <cstddef>

namespace paramtree::detail {

/// A 64-byte-aligned block of at least `bytes`; throws std::bad_alloc.
[[nodiscard]] void* allocate_buffer(std::size_t bytes);
/// Gives back a block from allocate_buffer with the same `bytes`.
void deallocate_buffer(void* p, std::size_t bytes) noexcept;

} // namespace paramtree::detail
