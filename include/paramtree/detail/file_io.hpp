// paramtree — internal: the file I/O under checkpoints and .npy files. Atomic, crash-safe
// writes (a locked temporary file renamed over the target, stale temporaries of dead writers
// removed) and the two ways of reading a file: one owned copy, or a read-only mapping.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace paramtree::detail {

/// A file's bytes and what keeps them alive.
struct file_bytes {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> owner;
};

/// The whole file read into one owned buffer (aligned for every dtype). Later changes to the
/// file cannot reach arrays made from it. Throws io_error.
[[nodiscard]] file_bytes read_file(const std::filesystem::path& file);

/// The file mapped read-only and shared with the page cache (no copy). Arrays made from it see
/// later in-place writes to the file, and touching a page after the file was truncated raises
/// SIGBUS: only for files nobody rewrites in place. Throws io_error.
[[nodiscard]] file_bytes map_file(const std::filesystem::path& file);

/// Writes `file` atomically: `write(fd)` fills a temporary file in the same directory,
/// which is fsync'ed and renamed over `file`, and the directory is fsync'ed. A symbolic link
/// at `file` is written through (the file it points to is replaced; the link stays). The new
/// file keeps the permission bits of the one it replaces, or gets 0666 & ~umask. On any
/// failure `file` is untouched and the temporary is gone; a writer that dies (SIGKILL, power
/// loss) leaves at most a temporary that the next save of the same file removes. Throws
/// io_error.
void atomic_write(const std::filesystem::path& file, const std::function<void(int fd)>& write);

/// Writes all `n` bytes to `fd` (retrying short writes and EINTR). Throws io_error naming `file`.
void write_all(int fd, const void* data, std::size_t n, const std::filesystem::path& file);

/// The name prefix of `file`'s temporaries: `.<name>.paramtree-tmp-`, or for a name too long
/// to take that and a suffix within NAME_MAX, `.paramtree-tmp-<hash of the name>-`.
[[nodiscard]] std::string temporary_prefix(const std::filesystem::path& file);

} // namespace paramtree::detail
