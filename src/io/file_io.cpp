// paramtree — atomic writes and whole-file reads (see <paramtree/detail/file_io.hpp>).
#include <paramtree/detail/file_io.hpp>
#include <paramtree/error.hpp>

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <utility>

#include <fmt/format.h>

namespace paramtree::detail {

namespace {

[[noreturn]] void io_fail(const std::filesystem::path& file, const std::string& what, int err) {
    throw io_error(what, file.string(), "success", std::strerror(err));
}

/// Owns one file descriptor: closed exactly once, also on error paths.
class unique_fd {
public:
    explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    void reset(int fd) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    /// Closes now and reports close's result (write errors can surface here on some file
    /// systems); the descriptor is released either way.
    int close() noexcept { return ::close(std::exchange(fd_, -1)); }

private:
    int fd_;
};

/// The process umask, read without changing it (umask(2) can only set it, which would race
/// with other threads creating files). Linux reports it in /proc/self/status since 4.7.
mode_t current_umask() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with("Umask:"))
            return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
    return 022;
}

/// Follows symbolic links at `file` to the path that will really be replaced, so saving to
/// `latest.safetensors -> run/step-100.safetensors` rewrites the file and keeps the link.
std::filesystem::path write_target(std::filesystem::path file) {
    for (int hops = 0; hops < 40; ++hops) {
        struct stat st {};
        if (::lstat(file.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return file;
        std::error_code ec;
        const auto to = std::filesystem::read_symlink(file, ec);
        if (ec) io_fail(file, "read the symbolic link", ec.value());
        file = to.is_absolute() ? to : file.parent_path() / to;
    }
    io_fail(file, "follow symbolic links", ELOOP);
}

std::string random_suffix() {
    // Unique per call in this process and unpredictable across processes.
    static std::atomic<std::uint64_t> counter{0};
    thread_local std::mt19937_64 rng(std::random_device{}());
    return fmt::format("{:x}{:x}", rng() & 0xffffffffffffULL, counter.fetch_add(1));
}

/// Removes temporaries of `target` whose writer is gone. A live writer holds an exclusive
/// flock on its temporary from before the name exists (O_TMPFILE) or from right after
/// (mkstemp fallback, hence the age check) until after the rename, so taking the lock without
/// waiting proves the writer died.
void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& prefix) {
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec), end;
    const auto now = std::filesystem::file_time_type::clock::now();
    for (; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.starts_with(prefix)) continue;
        std::error_code age_ec;
        const auto written = std::filesystem::last_write_time(it->path(), age_ec);
        if (age_ec || now - written < std::chrono::seconds(2)) continue;
        unique_fd fd(::open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd.valid() || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
        ::unlink(it->path().c_str());
    }
}

} // namespace

std::string temporary_prefix(const std::filesystem::path& file) {
    const std::string name = file.filename().string();
    // The temporary's name must fit where the file's does (NAME_MAX, 255 bytes on Linux file
    // systems): with the random suffix (at most 28 bytes) a long name would not, and the save
    // would fail only after writing everything. Long names use a hash of the name instead.
    constexpr std::size_t longest_suffix = 28;
    std::string prefix = "." + name + ".paramtree-tmp-";
    if (prefix.size() + longest_suffix <= NAME_MAX) return prefix;
    return fmt::format(".paramtree-tmp-{:016x}-", std::hash<std::string>{}(name));
}

void write_all(int fd, const void* data, std::size_t n, const std::filesystem::path& file) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            io_fail(file, "write", errno);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void atomic_write(const std::filesystem::path& requested,
                  const std::function<void(int fd)>& write) {
    const std::filesystem::path file = write_target(requested);
    const std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : ".";
    // Refused before anything is written, not after.
    if (file.filename().string().size() > NAME_MAX)
        throw io_error("save", file.string(),
                       fmt::format("a file name of at most {} bytes", NAME_MAX),
                       fmt::format("{} bytes", file.filename().string().size()));
    const std::string prefix = temporary_prefix(file);
    remove_stale_temporaries(dir, prefix);

    // The mode of the file being replaced, else what open(2) would give a new file.
    std::optional<mode_t> mode;
    struct stat old {};
    if (::stat(file.c_str(), &old) == 0) mode = old.st_mode & 07777;

    // O_TMPFILE: the temporary has no name until it is complete and locked, so a crash while
    // writing leaves nothing behind. Where the file system lacks it, mkostemp.
    std::string tmp;
    unique_fd fd(::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666));
    const bool anonymous = fd.valid();
    if (anonymous) {
        if (::flock(fd.get(), LOCK_EX) != 0) io_fail(file, "lock the temporary file", errno);
    } else {
        tmp = (dir / (prefix + "XXXXXX")).string();
        fd.reset(::mkostemp(tmp.data(), O_CLOEXEC));
        if (!fd.valid()) io_fail(file, "create a temporary file", errno);
        if (::flock(fd.get(), LOCK_EX) != 0) {
            const int err = errno;
            ::unlink(tmp.c_str());
            io_fail(tmp, "lock the temporary file", err);
        }
        if (!mode) mode = 0666 & ~current_umask(); // mkstemp creates 0600
    }
    try {
        write(fd.get());
        if (mode && ::fchmod(fd.get(), *mode) != 0) io_fail(file, "set the file mode", errno);
        if (::fsync(fd.get()) != 0) io_fail(file, "fsync", errno);
        if (anonymous) {
            // Give the finished file a name (still locked), then rename it over the target.
            const std::string self = fmt::format("/proc/self/fd/{}", fd.get());
            for (int attempt = 0;; ++attempt) {
                tmp = (dir / (prefix + random_suffix())).string();
                if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) == 0)
                    break;
                if (errno != EEXIST || attempt > 16) {
                    const int err = errno;
                    tmp.clear();
                    io_fail(file, "link the temporary file", err);
                }
            }
        }
        if (::rename(tmp.c_str(), file.c_str()) != 0) io_fail(file, "rename", errno);
        tmp.clear(); // it is the file now
    } catch (...) {
        if (!tmp.empty()) ::unlink(tmp.c_str());
        throw; // fd closes (once) as it goes out of scope
    }
    // Closing releases the lock; the data is already durable (fsync above).
    fd.close();
    // The rename is durable only once the directory is.
    const unique_fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd.valid()) io_fail(dir, "open the directory to fsync the rename", errno);
    if (::fsync(dfd.get()) != 0 && errno != EINVAL) // EINVAL: a file system without dir fsync
        io_fail(dir, "fsync the directory", errno);
}

namespace {
/// Opens `file` for reading and returns the descriptor and its size; a regular file only.
std::pair<int, std::size_t> open_regular(const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) io_fail(file, "open for reading", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        io_fail(file, "stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw io_error("open for reading", file.string(), "a regular file", "something else");
    }
    return {fd, static_cast<std::size_t>(st.st_size)};
}
} // namespace

file_bytes read_file(const std::filesystem::path& file) {
    const auto [raw, size] = open_regular(file);
    const unique_fd fd(raw);
    // operator new[] aligns to 16 bytes: every dtype can be used in place. Not
    // value-initialised: the read overwrites it.
    std::shared_ptr<std::byte[]> buffer(new std::byte[size == 0 ? 1 : size]);
    std::size_t got = 0;
    while (got < size) {
        const ssize_t r = ::read(fd.get(), buffer.get() + got, size - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            io_fail(file, "read", errno);
        }
        if (r == 0) break; // truncated while reading: the format check rejects what is short
        got += static_cast<std::size_t>(r);
    }
    const std::byte* data = buffer.get();
    return {{data, got}, std::move(buffer)};
}

file_bytes map_file(const std::filesystem::path& file) {
    const auto opened = open_regular(file);
    const unique_fd fd(opened.first);
    const std::size_t size = opened.second; // named: clang 14 cannot capture bindings
    if (size == 0) return {};
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) io_fail(file, "mmap", errno);
    std::shared_ptr<const void> owner(
        p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
    return {{static_cast<const std::byte*>(p), size}, std::move(owner)};
}

} // namespace paramtree::detail
