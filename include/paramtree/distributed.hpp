// paramtree — data-parallel training over MPI: a communicator value, broadcast of a tree,
// and the bucketed, overlapped gradient all-reduce of DDP — over the *pruned* tree, so a tied
// weight is one slot: reduced once, sent once.
//
// Built into the separate library paramtree_distributed (meson feature `mpi`, on when MPI is
// found); <mpi.h> is not included here, so this header compiles without MPI's headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>
#include <utility>

#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>

namespace paramtree::distributed {

/// MPI for this process, as a scope: initialises MPI (unless something else did) and
/// finalises it at the end of the scope (if it initialised it). One per process, in `main`.
///
///     pt::distributed::environment mpi;   // in main: environment mpi(argc, argv)
///     auto everyone = pt::distributed::communicator::world();
///     assert(everyone.rank() < everyone.size());
class environment {
public:
    environment();
    environment(int& argc, char**& argv);
    ~environment();
    environment(const environment&) = delete;
    environment& operator=(const environment&) = delete;

private:
    bool finalize_ = false;
};

/// A group of processes (an MPI communicator): a cheap value, copies share it.
class communicator {
public:
    /// Every process of the job (MPI_COMM_WORLD). Needs a live `environment`.
    [[nodiscard]] static communicator world();

    [[nodiscard]] int rank() const noexcept;
    [[nodiscard]] int size() const noexcept;
    /// The processes of this one with the same `color`, ordered by `key` (MPI_Comm_split).
    [[nodiscard]] communicator split(int color, int key = 0) const;
    /// Waits until every process got here.
    void barrier() const;

    struct impl; // holds the MPI_Comm (and frees split communicators when the last copy goes)

private:
    explicit communicator(std::shared_ptr<const impl> p) : impl_(std::move(p)) {}
    std::shared_ptr<const impl> impl_;
    friend const impl& handle(const communicator& c);
};

/// Throws structure_error on **every** process, naming the first path where this process's
/// tree differs from the root's (structure, dtype or shape), if any process's does. One
/// 16-byte all-reduce when they agree; never a hang or a silent mix when they do not.
///
///     pt::distributed::check_same_structure(world, params, "broadcast");
void check_same_structure(const communicator& comm, const tree& t, std::string_view context);

/// The root's tree on every process: each passes a tree of the same structure (its own
/// initialisation, as every DDP process builds the model) and gets the root's arrays.
/// Non-array leaves must be equal already (they are part of the structure check).
///
///     params = pt::distributed::broadcast(world, params);   // every rank starts equal
[[nodiscard]] tree broadcast(const communicator& comm, const tree& t, int root = 0);

/// Options of `allreduce_mean`.
struct allreduce_options {
    /// Gradient bytes per bucket (PyTorch DDP's default, 25 MiB). Leaves are packed in
    /// reverse flatten order (the last layers' gradients, ready first in a backward pass),
    /// one dtype per bucket; a leaf larger than a bucket is a bucket of its own.
    std::size_t bucket_bytes = std::size_t{25} << 20;
    /// This process's weight in the mean (e.g. its number of examples when the global batch
    /// does not split evenly); the result is sum(weight * grads) / sum(weight).
    double weight = 1.0;
};

/// What one `allreduce_mean` sent.
struct allreduce_stats {
    std::size_t bytes = 0;   // gradient bytes reduced (each float leaf of the pruned tree once)
    std::size_t buckets = 0; // non-blocking all-reduces issued
};

/// The (weighted) mean over all processes of `grads`, leaf by leaf, for every float32 and
/// float64 array leaf; other leaves (None for filtered-out parameters, integers) come back
/// unchanged. `grads` is the pruned gradient `value_and_grad` returns for a tied model: a
/// tied weight is one leaf, reduced and sent once. Buckets are reduced with non-blocking
/// MPI (MPI_Iallreduce): bucket k+1 is packed while bucket k is on the wire. Checks that all
/// processes pass the same structure first (`check_same_structure`).
///
///     grads = pt::distributed::allreduce_mean(world, grads);   // the same on every process
[[nodiscard]] tree allreduce_mean(const communicator& comm, const tree& grads,
                                  const allreduce_options& options = {},
                                  allreduce_stats* stats = nullptr);

/// This process's rows [first, last) of a global batch of `global` rows: contiguous,
/// disjoint, covering the batch, sizes differing by at most one (lower ranks get the extra).
///
///     auto [first, last] = pt::distributed::batch_slice(16, world);   // 8 rows each on 2
///     const std::size_t even = 16 / std::size_t(world.size());
///     assert(last - first == even || last - first == even + 1);
[[nodiscard]] std::pair<std::size_t, std::size_t> batch_slice(std::size_t global,
                                                              const communicator& comm);

/// A 64-bit digest of every array's bytes and the structure: equal digests on all
/// processes mean bitwise-equal parameters (used to verify a data-parallel run).
[[nodiscard]] std::uint64_t digest(const tree& t);

/// True when `digest(t)` is the same on every process.
[[nodiscard]] bool identical_on_all(const communicator& comm, const tree& t);

/// One array leaf of the pruned tree in a shard plan: where it is, its bytes, which process
/// owns it, and the other positions that use it (a tie group is one leaf: never split).
struct shard_entry {
    path where;
    std::size_t bytes = 0;
    int owner = 0;
    std::vector<path> also_at;
    dtype type = dtype::float32; ///< the leaf's dtype and shape (all_gather rebuilds it)
    shape_type shape;
    std::size_t leaf = 0; ///< its position among the tree's flattened leaves
};

/// Which process owns each array leaf of a tree (ZeRO's partition of optimizer state): every
/// leaf of the PRUNED tree goes to exactly one process, balanced by bytes.
struct sharding {
    int processes = 1;
    treedef structure;               ///< of the tree planned (None counted as a leaf, so a
                                     ///< tree with None at leaves it does not own matches)
    std::vector<shard_entry> leaves; ///< the array leaves, in flatten order
    std::vector<std::size_t> bytes;  ///< per process
    /// max / mean - 1 over the processes' bytes (0: perfectly even).
    [[nodiscard]] double imbalance() const noexcept;
    /// The plan as text: per process bytes and leaves, then every leaf with its owner, ties
    /// named as one leaf.
    [[nodiscard]] std::string to_string() const;
    /// `t` (the planned structure) with None at every array leaf `process` does not own: what
    /// that process keeps optimizer state for. Throws structure_error naming the first
    /// difference if `t` is not of the planned structure.
    [[nodiscard]] tree owned(const tree& t, int process) const;
};

/// Plans the sharding of `t` over `processes`: its pruned array leaves, largest first, each to
/// the process with the fewest bytes so far (greedy, deterministic: every process computes the
/// same plan). A tied weight is one leaf, so a tie group is never split; with more processes
/// than leaves some own nothing. Throws value_error for fewer than one process.
///
///     const pt::distributed::sharding plan = pt::distributed::shard_plan(lm, 2);
///     std::cout << plan.to_string();          // the tie: one leaf, one owner
///     assert(plan.leaves.size() == 2 && plan.leaves[0].owner != plan.leaves[1].owner);
[[nodiscard]] sharding shard_plan(const tree& t, int processes);

/// ZeRO-2's gradient step: the (weighted) mean over all processes of `grads` — the pruned
/// gradient, of `plan`'s structure — delivered only to each leaf's owner. Every float leaf
/// is summed once and lands on one process (one MPI_Reduce_scatter per dtype, the owners'
/// leaves laid out in rank order), so each process receives about 1/n of the gradient bytes
/// instead of all of them. The result has the plan's structure with None at the leaves this
/// process does not own, ready for an optimizer whose state was built from
/// `plan.owned(params, rank)`. Throws value_error if the plan is not for `comm.size()`
/// processes, structure_error if `grads` is not of the plan's structure, and fails on every
/// process, naming the first differing path, if the processes' trees differ.
///
///     const auto plan = pt::distributed::shard_plan(params, world.size());
///     const pt::tree mine = pt::distributed::reduce_scatter_mean(world, grads, plan);
///     // mine: the mean gradient at the leaves this process owns, None elsewhere
[[nodiscard]] tree reduce_scatter_mean(const communicator& comm, const tree& grads,
                                       const sharding& plan, const allreduce_options& options = {},
                                       allreduce_stats* stats = nullptr);

/// The other half of a sharded step: each process passes the tree with its owned leaves
/// updated (other array leaves may be None or stale), and every process gets the whole tree,
/// each leaf from its owner (one MPI_Allgatherv of the owned bytes, any dtype). Ties stay
/// one leaf: the result has the plan's structure. Throws as `reduce_scatter_mean`, and
/// leaf_error naming the path if an owned leaf is missing or has another dtype or shape (on
/// the process that passed it; the others get a value_error naming that process and path,
/// so nobody waits in the collective).
///
///     const auto plan = pt::distributed::shard_plan(params, world.size());
///     const pt::tree owned = plan.owned(params, world.rank());   // updated by its owner
///     params = pt::distributed::all_gather(world, owned, plan);  // whole again everywhere
[[nodiscard]] tree all_gather(const communicator& comm, const tree& owned, const sharding& plan,
                              allreduce_stats* stats = nullptr);

/// Saves a tree held in pieces as a sharded checkpoint: every process passes its `local`
/// tree — one structure on all processes, each with arrays at the leaves it holds and None
/// elsewhere (`plan.owned(params, rank)`, or a sharded optimizer state) — and writes the
/// arrays it holds (a leaf several processes hold is written by the lowest of them) to its
/// own safetensors file next to `index`; process 0 then writes `index`, a JSON file in the
/// layout of Hugging Face's `model.safetensors.index.json` (`weight_map`: tensor -> file)
/// whose metadata holds the structure and the ties, once. The set is atomic: shard files
/// carry a generation number in their names, the index is replaced (write, fsync, rename)
/// only after every process has written its shard, and the previous generation's files are
/// removed only then — a crash at any point leaves the previous checkpoint loadable.
/// `pt::load_tree(index)` / `pt::load(index, like)` read it back whole, on any number of
/// processes (one included). Throws io_error (on every process, naming the one that failed)
/// if a file cannot be written, value_error if the structures differ across processes.
///
///     const auto plan = pt::distributed::shard_plan(params, world.size());
///     pt::distributed::save_sharded(world, "model.safetensors.index.json",
///                                   plan.owned(params, world.rank()));
///     pt::tree back = pt::load_tree("model.safetensors.index.json");  // the whole tree
void save_sharded(const communicator& comm, const std::filesystem::path& index, const tree& local);

} // namespace paramtree::distributed
