// paramtree — internal: what an array handle points at.
#pragma once

#include <cstddef>
#include <memory>

#include <paramtree/array.hpp>

namespace paramtree::detail {

struct array_impl {
    paramtree::dtype dt = paramtree::dtype::float32;
    shape_type shape;
    std::size_t size = 0;
    const std::byte* data = nullptr;
    std::shared_ptr<const void> owner;       // keeps `data` alive
    std::shared_ptr<const trace_slot> trace; // set only while a gradient is being taken
};

/// Elementwise a + b for arrays of one dtype and shape; throws shape_error otherwise.
[[nodiscard]] array add(const array& a, const array& b);

/// Product of the extents; throws shape_error if it overflows.
[[nodiscard]] std::size_t checked_size(const shape_type& shape);

} // namespace paramtree::detail
