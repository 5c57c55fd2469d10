// paramtree — data parallelism over MPI (only this file includes <mpi.h>).
//
// Every collective first agrees on the trees' structure with one 16-byte all-reduce of a
// fingerprint (max of h and of ~h: all equal iff max(h) == ~max(~h)), so processes that
// disagree fail together with the first differing path instead of hanging or reducing
// mismatched buffers. Gradients then travel in buckets: one dtype per bucket, leaves in
// reverse flatten order, a leaf larger than a bucket spread over several; each bucket is
// packed and handed to MPI_Iallreduce before the next is packed.
#include <paramtree/detail/array_impl.hpp>
#include <paramtree/detail/errors.hpp>
#include <paramtree/detail/file_io.hpp>
#include <paramtree/detail/walk.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/distributed.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/print.hpp>
#include <paramtree/shared.hpp>
#include <paramtree/treedef.hpp>

#include "io/checkpoint_shards.hpp"
#include "io/structure_codec.hpp"

// The C API only: MPI's deprecated C++ bindings are not warning-clean.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace paramtree::distributed {

struct communicator::impl {
    MPI_Comm comm = MPI_COMM_NULL;
    bool owned = false; // created by split: freed with the last copy (while MPI is up)
    int rank = 0;
    int size = 1;
    ~impl() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owned && !finalized) MPI_Comm_free(&comm);
    }
};

const communicator::impl& handle(const communicator& c) {
    return *c.impl_;
}

namespace {

void require_mpi(const char* context) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
        detail::throw_value(context, {}, "MPI initialised (a live pt::distributed::environment)",
                            finalized ? "MPI already finalised" : "MPI not initialised");
}

std::shared_ptr<const communicator::impl> make_impl(MPI_Comm comm, bool owned) {
    auto p = std::make_shared<communicator::impl>();
    p->comm = comm;
    p->owned = owned;
    MPI_Comm_rank(comm, &p->rank);
    MPI_Comm_size(comm, &p->size);
    return p;
}

MPI_Comm raw(const communicator& c) {
    return handle(c).comm;
}

// 64-bit FNV-1a, then a final avalanche: cheap, and identical on every process.
struct hasher {
    std::uint64_t h = 0xcbf29ce484222325ull;
    void bytes(const void* data, std::size_t n) {
        const auto* p = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < n; ++i)
            h = (h ^ p[i]) * 0x100000001b3ull;
    }
    template <class T>
    void value(const T& v) {
        bytes(&v, sizeof v);
    }
    [[nodiscard]] std::uint64_t done() const {
        std::uint64_t x = h;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        return x;
    }
};

// Structure, then dtype and shape of every array leaf and the value of every other leaf:
// what must agree before buffers are exchanged.
std::uint64_t fingerprint(const flat_tree& flat) {
    hasher h;
    h.value(std::hash<treedef>{}(flat.def));
    for (const tree& leaf : flat.leaves) {
        if (leaf.is_array()) {
            const array& a = leaf.as_array();
            h.value(static_cast<int>(a.dtype()));
            for (const auto d : a.shape())
                h.value(d);
        } else {
            const std::string s = to_string(leaf);
            h.bytes(s.data(), s.size());
        }
    }
    return h.done();
}

// True on every process iff `value` is the same on all of them.
bool all_equal(MPI_Comm comm, std::uint64_t value) {
    std::uint64_t in[2] = {value, ~value}, out[2] = {0, 0};
    MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, comm);
    return out[0] == ~out[1];
}

void broadcast_string(MPI_Comm comm, std::string& s, int root) {
    std::uint64_t n = s.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm);
    s.resize(n);
    for (std::uint64_t off = 0; off < n; off += INT_MAX)
        MPI_Bcast(s.data() + off, static_cast<int>(std::min<std::uint64_t>(n - off, INT_MAX)),
                  MPI_CHAR, root, comm);
}

// The tree with every array replaced by its description (`f32[3,4]`): what the structure
// check compares, small enough to send whatever the model's size.
tree shapes_of(const tree& t) {
    return tree_map(
        [](const tree& leaf) { return leaf.is_array() ? tree(leaf.as_array().describe()) : leaf; },
        t);
}

// Called on every process when the fingerprints differ: finds the lowest process whose tree
// differs from the root's and throws its first difference everywhere.
[[noreturn]] void throw_mismatch(MPI_Comm comm, int rank, const tree& t, std::string_view context,
                                 int root) {
    std::string text, ties;
    if (rank == root) {
        auto enc = detail::encode_structure(shapes_of(t), std::string(context));
        text = std::move(enc.text);
        ties = std::move(enc.ties);
    }
    broadcast_string(comm, text, root);
    broadcast_string(comm, ties, root);
    const tree root_shapes = detail::decode_structure(
        text, [](const std::string&) -> array { return {}; }, detail::parse_bounded(ties, 3),
        std::string(context));
    const auto diffs = tree_diff(root_shapes, shapes_of(t));
    int mine = diffs.empty() ? INT_MAX : rank, first = INT_MAX;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    std::string where, left, right;
    // Array leaves were compared as their descriptions: show `f32[3]`, not "the string ...".
    const auto unquote = [](std::string s) {
        constexpr std::string_view prefix = "the string '";
        if (s.starts_with(prefix) && s.ends_with('\''))
            return s.substr(prefix.size(), s.size() - prefix.size() - 1);
        return s;
    };
    if (rank == first) {
        where = keystr(diffs.front().where);
        left = unquote(diffs.front().left);
        right = unquote(diffs.front().right);
    }
    if (first != INT_MAX) {
        broadcast_string(comm, where, first);
        broadcast_string(comm, left, first);
        broadcast_string(comm, right, first);
    }
    throw structure_error(
        fmt::format("{}: the trees differ across processes (process {} against process {})",
                    context, first == INT_MAX ? rank : first, root),
        where, fmt::format("{} (as on process {})", left, root),
        fmt::format("{} on process {}", right, first == INT_MAX ? rank : first));
}

// `flat` is flatten(t): the callers flatten once, for the check and for the data.
void check_structure(const communicator& comm, const tree& t, const flat_tree& flat,
                     std::string_view context, int root = 0) {
    if (!all_equal(raw(comm), fingerprint(flat)))
        throw_mismatch(raw(comm), comm.rank(), t, context, root);
}

MPI_Datatype mpi_type(dtype d) {
    return d == dtype::float64 ? MPI_DOUBLE : MPI_FLOAT;
}

// One dtype's stream of gradient elements: leaves in reverse flatten order, cut into buckets.
struct piece {
    std::size_t leaf;   // index among the flattened leaves
    std::size_t offset; // first element of the leaf in this bucket
    std::size_t count;
};
// A bucket's bytes live in arrays (fresh_bytes: from the buffer cache and not zeroed): a
// training loop sends buckets of the same sizes every step, and a std::vector's fresh,
// zero-filled 1.6 MB cost the demo's all-reduce 0.1-0.2 ms of page faults and memset (perf)
// before MPI saw a byte.
struct bucket {
    dtype type;
    std::vector<piece> pieces;
    detail::fresh_array<std::byte> data{};   // packed: what this process sends
    detail::fresh_array<std::byte> result{}; // what arrives: the reduced bucket, or this
                                             // process's part of it
    MPI_Request request = MPI_REQUEST_NULL;
};

std::vector<bucket> plan_buckets(const std::vector<tree>& leaves, std::size_t bucket_bytes) {
    std::vector<bucket> out;
    for (const dtype type : {dtype::float32, dtype::float64}) {
        const std::size_t item = dtype_size(type);
        const std::size_t capacity =
            std::clamp<std::size_t>(bucket_bytes / item, 1, static_cast<std::size_t>(INT_MAX));
        std::size_t used = capacity; // start a bucket at the first leaf
        for (std::size_t i = leaves.size(); i-- > 0;) {
            if (!leaves[i].is_array() || leaves[i].as_array().dtype() != type) continue;
            const std::size_t n = leaves[i].as_array().size();
            for (std::size_t off = 0; off < n;) {
                if (used == capacity) {
                    out.push_back({type, {}, {}, {}, MPI_REQUEST_NULL});
                    used = 0;
                }
                const std::size_t take = std::min(n - off, capacity - used);
                out.back().pieces.push_back({i, off, take});
                off += take;
                used += take;
            }
        }
    }
    return out;
}

template <class T>
void pack(bucket& b, const std::vector<tree>& leaves, double weight) {
    std::size_t total = 0;
    for (const auto& p : b.pieces)
        total += p.count;
    b.data = detail::fresh_bytes(dtype_of<T>, {total});
    T* out = reinterpret_cast<T*>(b.data.data);
    for (const auto& p : b.pieces) {
        const T* in = detail::data<T>(leaves[p.leaf].as_array()) + p.offset;
        if (weight == 1.0) {
            std::memcpy(out, in, p.count * sizeof(T));
        } else {
            const T w = static_cast<T>(weight);
            for (std::size_t k = 0; k < p.count; ++k)
                out[k] = in[k] * w;
        }
        out += p.count;
    }
}

template <class T>
void unpack(const bucket& b, std::vector<void*>& outputs, double scale) {
    const T* in = detail::data<T>(b.result.value);
    const T s = static_cast<T>(scale);
    for (const auto& p : b.pieces) {
        T* out = static_cast<T*>(outputs[p.leaf]) + p.offset;
        for (std::size_t k = 0; k < p.count; ++k)
            out[k] = in[k] * s;
        in += p.count;
    }
}

/// `pack` for the bucket's own float dtype.
void pack_bucket(bucket& b, const std::vector<tree>& leaves, double weight) {
    if (b.type == dtype::float64)
        pack<double>(b, leaves, weight);
    else
        pack<float>(b, leaves, weight);
}

/// The reduced leaves: a fresh array for every leaf the buckets carry (a leaf spread over
/// several buckets gets one), each bucket waited for and unpacked, times `scale`, as it
/// arrives.
void receive(std::vector<bucket>& buckets, std::vector<tree>& leaves, double scale) {
    std::vector<void*> outputs(leaves.size(), nullptr);
    for (const auto& b : buckets)
        for (const auto& p : b.pieces)
            if (outputs[p.leaf] == nullptr) {
                const array& a = leaves[p.leaf].as_array();
                auto made = detail::fresh_bytes(a.dtype(), a.shape());
                outputs[p.leaf] = made.data;
                leaves[p.leaf] = std::move(made.value);
            }
    for (auto& b : buckets) {
        MPI_Wait(&b.request, MPI_STATUS_IGNORE);
        if (b.type == dtype::float64)
            unpack<double>(b, outputs, scale);
        else
            unpack<float>(b, outputs, scale);
    }
}

/// The sum of every process's weight in a mean, travelling alongside the buckets: started
/// before them, waited for before the result is scaled.
class weight_total {
public:
    weight_total(const communicator& comm, double weight, const char* context)
        : weight_(weight), context_(context) {
        if (!(weight >= 0) || !std::isfinite(weight))
            detail::throw_value(context, {}, "a finite weight >= 0", fmt::format("{}", weight));
        MPI_Iallreduce(&weight_, &total_, 1, MPI_DOUBLE, MPI_SUM, raw(comm), &request_);
    }
    ~weight_total() {
        // An exception between start and finish: MPI still writes into total_.
        if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    }
    weight_total(const weight_total&) = delete; // MPI writes into total_ until finished
    weight_total& operator=(const weight_total&) = delete;
    [[nodiscard]] double weight() const noexcept { return weight_; }
    /// The total, which must be positive.
    [[nodiscard]] double finish() {
        MPI_Wait(&request_, MPI_STATUS_IGNORE);
        if (!(total_ > 0))
            detail::throw_value(context_, {}, "a positive total weight", fmt::format("{}", total_));
        return total_;
    }

private:
    double weight_, total_ = 0;
    const char* context_;
    MPI_Request request_ = MPI_REQUEST_NULL;
};

} // namespace

environment::environment() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        finalize_ = true;
    }
}

environment::environment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
        finalize_ = true;
    }
}

environment::~environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalize_ && !finalized) MPI_Finalize();
}

communicator communicator::world() {
    require_mpi("communicator::world");
    return communicator(make_impl(MPI_COMM_WORLD, false));
}

int communicator::rank() const noexcept {
    return impl_->rank;
}

int communicator::size() const noexcept {
    return impl_->size;
}

communicator communicator::split(int color, int key) const {
    MPI_Comm out = MPI_COMM_NULL;
    MPI_Comm_split(impl_->comm, color, key, &out);
    return communicator(make_impl(out, true));
}

void communicator::barrier() const {
    MPI_Barrier(impl_->comm);
}

void check_same_structure(const communicator& comm, const tree& t, std::string_view context) {
    check_structure(comm, t, flatten(t), context);
}

tree broadcast(const communicator& comm, const tree& t, int root) {
    if (root < 0 || root >= comm.size())
        detail::throw_value("broadcast", {}, fmt::format("a root in [0, {})", comm.size()),
                            std::to_string(root));
    auto flat = flatten(t);
    check_structure(comm, t, flat, "broadcast", root);
    auto& [leaves, def] = flat;
    for (auto& leaf : leaves) {
        if (!leaf.is_array()) continue;
        const array& a = leaf.as_array();
        const std::size_t n = a.nbytes();
        std::byte* data = nullptr;
        if (comm.rank() == root) {
            // MPI_Bcast's buffer is not const at the root, but it is only read there.
            data = const_cast<std::byte*>(a.bytes());
        } else {
            auto made = detail::fresh_bytes(a.dtype(), a.shape());
            data = made.data;
            leaf = std::move(made.value);
        }
        for (std::size_t off = 0; off < n; off += INT_MAX)
            MPI_Bcast(data + off, static_cast<int>(std::min<std::size_t>(n - off, INT_MAX)),
                      MPI_BYTE, root, raw(comm));
    }
    return unflatten(def, std::move(leaves));
}

tree allreduce_mean(const communicator& comm, const tree& grads, const allreduce_options& options,
                    allreduce_stats* stats) {
    auto flat = flatten(grads);
    check_structure(comm, grads, flat, "allreduce_mean");
    auto& [leaves, def] = flat;
    weight_total total(comm, options.weight, "allreduce_mean");

    std::vector<bucket> buckets = plan_buckets(leaves, options.bucket_bytes);
    // Out of place: OpenMPI's non-blocking all-reduce copies an in-place buffer aside first
    // (the demo's 1.6 MB on shared memory, two processes: 0.78 ms in place, 0.50 ms out of
    // place; its reduce-scatter and all-gather halves 0.56 ms; docs/design.md).
    for (auto& b : buckets) {
        pack_bucket(b, leaves, total.weight());
        b.result = detail::fresh_bytes(b.type, b.data.value.shape());
        MPI_Iallreduce(b.data.data, b.result.data, static_cast<int>(b.data.value.size()),
                       mpi_type(b.type), MPI_SUM, raw(comm), &b.request);
    }
    receive(buckets, leaves, 1.0 / total.finish());
    std::size_t bytes = 0;
    for (const auto& b : buckets)
        for (const auto& p : b.pieces) // the gradient's bytes, not the padding
            bytes += p.count * dtype_size(b.type);
    if (stats != nullptr) *stats = {bytes, buckets.size()};
    return unflatten(def, std::move(leaves));
}

std::pair<std::size_t, std::size_t> batch_slice(std::size_t global, const communicator& comm) {
    const auto rank = static_cast<std::size_t>(comm.rank());
    const auto size = static_cast<std::size_t>(comm.size());
    const std::size_t base = global / size, extra = global % size;
    const std::size_t first = rank * base + std::min(rank, extra);
    return {first, first + base + (rank < extra ? 1 : 0)};
}

std::uint64_t digest(const tree& t) {
    hasher h;
    const flat_tree flat = flatten(t);
    h.value(fingerprint(flat));
    for (const tree& leaf : flat.leaves)
        if (leaf.is_array()) h.bytes(leaf.as_array().bytes(), leaf.as_array().nbytes());
    return h.done();
}

bool identical_on_all(const communicator& comm, const tree& t) {
    return all_equal(raw(comm), digest(t));
}

// ---- shard plans ---------------------------------------------------------------------------

namespace {
/// A tree flattened for sharding: None is a leaf, so the trees of a sharded step (gradients
/// with None at filtered leaves, a process's owned tree with None elsewhere) keep the
/// structure of the plan.
flat_tree flatten_planned(const tree& t) {
    return flatten(t, [](const tree& x) { return x.is_none(); });
}
} // namespace

sharding shard_plan(const tree& t, int processes) {
    if (processes < 1)
        detail::throw_value("shard_plan", {}, "at least one process", fmt::format("{}", processes));
    auto [leaves, def] = flatten_planned(t);
    sharding plan;
    plan.processes = processes;
    plan.bytes.assign(static_cast<std::size_t>(processes), 0);
    const auto& paths = def.leaf_paths();
    const auto groups = tie_groups(t);
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        if (!leaves[i].is_array()) continue;
        const array& a = leaves[i].as_array();
        shard_entry e{paths[i], a.nbytes(), 0, {}, a.dtype(), a.shape(), i};
        // A leaf under a tie's source is used again at each tied position (same relative path).
        for (const auto& g : groups) {
            const path& src = g.source;
            if (src.size() > e.where.size() || !std::equal(src.begin(), src.end(), e.where.begin()))
                continue;
            for (const path& at : g.tied) {
                path there = at;
                for (std::size_t k = src.size(); k < e.where.size(); ++k)
                    there.push_back(e.where[k]);
                e.also_at.push_back(std::move(there));
            }
        }
        plan.leaves.push_back(std::move(e));
    }
    // Largest first, each to the least loaded process (lowest rank on a draw): the classic
    // greedy for balancing, within 4/3 of the best possible maximum.
    std::vector<std::size_t> order(plan.leaves.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return plan.leaves[a].bytes > plan.leaves[b].bytes;
    });
    for (const std::size_t i : order) {
        const auto least = std::min_element(plan.bytes.begin(), plan.bytes.end());
        plan.leaves[i].owner = static_cast<int>(least - plan.bytes.begin());
        *least += plan.leaves[i].bytes;
    }
    plan.structure = std::move(def);
    return plan;
}

double sharding::imbalance() const noexcept {
    std::size_t total = 0, most = 0;
    for (const std::size_t b : bytes) {
        total += b;
        most = std::max(most, b);
    }
    if (total == 0) return 0;
    const double mean = static_cast<double>(total) / static_cast<double>(bytes.size());
    return static_cast<double>(most) / mean - 1;
}

std::string sharding::to_string() const {
    std::size_t total = 0;
    for (const std::size_t b : bytes)
        total += b;
    std::string out = fmt::format("shard plan: {} leaves, {} bytes, over {} processes "
                                  "(imbalance {:.1f}%)\n",
                                  leaves.size(), total, processes, 100 * imbalance());
    for (int p = 0; p < processes; ++p) {
        const auto n = std::count_if(leaves.begin(), leaves.end(),
                                     [&](const shard_entry& e) { return e.owner == p; });
        out += fmt::format("  process {}: {} bytes in {} {}\n", p,
                           bytes[static_cast<std::size_t>(p)], n, n == 1 ? "leaf" : "leaves");
    }
    for (const shard_entry& e : leaves) {
        out += fmt::format("  {} -> process {} ({} bytes)", display_path(keystr(e.where)), e.owner,
                           e.bytes);
        if (!e.also_at.empty()) {
            std::vector<std::string> at;
            for (const path& p : e.also_at)
                at.push_back(keystr(p));
            out += fmt::format("; tie: also {} (one leaf, one owner)", fmt::join(at, ", "));
        }
        out += "\n";
    }
    return out;
}

tree sharding::owned(const tree& t, int process) const {
    auto [leaves, def] = flatten_planned(t);
    if (!(def == structure))
        detail::throw_structure_mismatch("sharding::owned", structure, def, "the plan", "the tree");
    for (const shard_entry& e : this->leaves)
        if (e.owner != process) leaves[e.leaf] = tree{};
    return unflatten(def, std::move(leaves));
}

// ---- sharded steps ---------------------------------------------------------------------

namespace {

/// The plan: the structure, and each leaf's owner, dtype and shape.
std::uint64_t plan_digest(const sharding& plan) {
    hasher h;
    h.value(std::hash<treedef>{}(plan.structure));
    for (const shard_entry& e : plan.leaves) {
        h.value(e.leaf);
        h.value(e.owner);
        h.value(static_cast<int>(e.type));
        for (const auto d : e.shape)
            h.value(d);
    }
    return h.done();
}

/// The flattened tree, checked against the plan, and the plan across processes: the trees
/// of a sharded step legitimately differ (each holds its own leaves), the plans may not.
flat_tree planned(const communicator& comm, const tree& t, const sharding& plan,
                  std::string_view context) {
    if (plan.processes != comm.size())
        detail::throw_value(std::string(context), {},
                            fmt::format("a plan for the communicator's {} processes", comm.size()),
                            fmt::format("a plan for {}", plan.processes));
    flat_tree flat = flatten_planned(t);
    if (!(flat.def == plan.structure))
        detail::throw_structure_mismatch(std::string(context), plan.structure, flat.def, "the plan",
                                         "the tree");
    if (!all_equal(raw(comm), plan_digest(plan)))
        detail::throw_value(std::string(context), {}, "one shard plan on every process",
                            "plans that differ (made from trees of another structure, or for "
                            "another number of processes)");
    return flat;
}

} // namespace

tree reduce_scatter_mean(const communicator& comm, const tree& grads, const sharding& plan,
                         const allreduce_options& options, allreduce_stats* stats) {
    auto flat = planned(comm, grads, plan, "reduce_scatter_mean");
    check_structure(comm, grads, flat, "reduce_scatter_mean");
    auto& [leaves, def] = flat;
    weight_total total(comm, options.weight, "reduce_scatter_mean");

    const int me = comm.rank();
    // One stream per float dtype: every process's owned leaves, in rank order, so that the
    // reduce-scatter's k-th segment is exactly what process k owns.
    std::vector<bucket> sends, mine;
    std::vector<std::vector<int>> counts;
    for (const dtype type : {dtype::float32, dtype::float64}) {
        bucket send{type, {}, {}, {}, MPI_REQUEST_NULL}, own{type, {}, {}, {}, MPI_REQUEST_NULL};
        std::vector<int> per(static_cast<std::size_t>(comm.size()), 0);
        for (int p = 0; p < comm.size(); ++p)
            for (const shard_entry& e : plan.leaves) {
                const tree& g = leaves[e.leaf];
                if (e.owner != p || !g.is_array() || g.as_array().dtype() != type) continue;
                const std::size_t n = g.as_array().size();
                send.pieces.push_back({e.leaf, 0, n});
                if (p == me) own.pieces.push_back({e.leaf, 0, n});
                per[static_cast<std::size_t>(p)] += static_cast<int>(n);
            }
        if (send.pieces.empty()) continue;
        sends.push_back(std::move(send));
        mine.push_back(std::move(own));
        counts.push_back(std::move(per));
    }
    for (std::size_t b = 0; b < sends.size(); ++b) {
        pack_bucket(sends[b], leaves, total.weight());
        mine[b].result = detail::fresh_bytes(
            sends[b].type, {static_cast<std::size_t>(counts[b][static_cast<std::size_t>(me)])});
        MPI_Ireduce_scatter(sends[b].data.data, mine[b].result.data, counts[b].data(),
                            mpi_type(sends[b].type), MPI_SUM, raw(comm), &mine[b].request);
    }
    // Leaves owned elsewhere become None; owned ones fresh arrays, filled as data arrives.
    receive(mine, leaves, 1.0 / total.finish());
    for (const shard_entry& e : plan.leaves)
        if (e.owner != me) leaves[e.leaf] = tree{};
    std::size_t bytes = 0;
    for (const auto& b : sends)
        bytes += b.data.value.nbytes();
    if (stats != nullptr) *stats = {bytes, sends.size()};
    return unflatten(def, std::move(leaves));
}

tree all_gather(const communicator& comm, const tree& owned, const sharding& plan,
                allreduce_stats* stats) {
    auto flat = planned(comm, owned, plan, "all_gather");
    auto& [leaves, def] = flat;
    const int me = comm.rank();
    // Bytes, not typed elements: a gather copies, so one stream carries every dtype.
    std::vector<int> counts(static_cast<std::size_t>(comm.size()), 0);
    std::vector<std::byte> send;
    const shard_entry* bad = nullptr;
    for (const shard_entry& e : plan.leaves) {
        counts[static_cast<std::size_t>(e.owner)] += static_cast<int>(e.bytes);
        if (e.owner != me || bad != nullptr) continue;
        const tree& leaf = leaves[e.leaf];
        if (!leaf.is_array() || leaf.as_array().dtype() != e.type ||
            leaf.as_array().shape() != e.shape) {
            bad = &e;
            continue;
        }
        const std::byte* from = leaf.as_array().bytes();
        send.insert(send.end(), from, from + e.bytes);
    }
    // Agree before the collective: a process that cannot contribute must not leave the others
    // waiting in it.
    int failed = bad != nullptr ? me : INT_MAX, first = INT_MAX;
    MPI_Allreduce(&failed, &first, 1, MPI_INT, MPI_MIN, raw(comm));
    if (first != INT_MAX) {
        std::string where = bad != nullptr ? keystr(bad->where) : std::string();
        broadcast_string(raw(comm), where, first);
        if (bad != nullptr)
            detail::throw_leaf(
                "all_gather", bad->where,
                fmt::format("this process's updated {}", describe(bad->type, bad->shape)),
                describe(leaves[bad->leaf]));
        detail::throw_value(
            "all_gather", {}, "every owner's updated leaves",
            fmt::format("process {} without its leaf {}", first, display_path(where)));
    }
    std::vector<int> displs(counts.size(), 0);
    for (std::size_t p = 1; p < counts.size(); ++p)
        displs[p] = displs[p - 1] + counts[p - 1];
    std::vector<std::byte> all(static_cast<std::size_t>(displs.back() + counts.back()));
    MPI_Allgatherv(send.data(), static_cast<int>(send.size()), MPI_BYTE, all.data(), counts.data(),
                   displs.data(), MPI_BYTE, raw(comm));
    // Each owner's bytes in plan order, as packed above.
    std::vector<std::size_t> at(displs.begin(), displs.end());
    for (const shard_entry& e : plan.leaves) {
        auto made = detail::fresh_bytes(e.type, e.shape);
        std::memcpy(made.data, all.data() + at[static_cast<std::size_t>(e.owner)], e.bytes);
        at[static_cast<std::size_t>(e.owner)] += e.bytes;
        leaves[e.leaf] = std::move(made.value);
    }
    if (stats != nullptr) *stats = {all.size(), 1};
    return unflatten(def, std::move(leaves));
}

// ---- sharded checkpoints ---------------------------------------------------------------

namespace {

/// `model.safetensors.index.json` -> `model.safetensors`, the stem shard names start from.
std::string shard_stem(const std::filesystem::path& index) {
    std::string name = index.filename().string();
    for (const std::string_view suffix : {".index.json", ".json"})
        if (name.size() > suffix.size() && name.ends_with(suffix)) {
            name.resize(name.size() - suffix.size());
            break;
        }
    if (name.ends_with(".safetensors")) name.resize(name.size() - 12);
    return name;
}

std::string shard_name(const std::string& stem, std::uint64_t generation, int rank, int size) {
    return fmt::format("{}.g{}-{:05}-of-{:05}.safetensors", stem, generation, rank + 1, size);
}

/// The generation of the checkpoint `index` holds now (0 if none can be read): the next
/// save writes the one after it, under new file names.
std::uint64_t current_generation(const std::filesystem::path& index) {
    std::error_code ec;
    if (!std::filesystem::exists(index, ec)) return 0;
    try {
        const auto bytes = detail::read_file(index);
        const auto j = detail::parse_bounded(
            std::string_view(reinterpret_cast<const char*>(bytes.bytes.data()), bytes.bytes.size()),
            8);
        const auto& g = j.at("metadata").at("paramtree.generation");
        return std::stoull(g.get<std::string>());
    } catch (const std::exception&) {
        return 0; // not ours, or unreadable: it is replaced, never read
    }
}

/// Runs `write` on every process, then agrees: if it threw anywhere, every process throws
/// (the failing one its own error, the others an io_error naming it), so no process goes on
/// to the next step of a save that did not happen.
template <class Write>
void on_all_or_none(const communicator& comm, const std::string& context, Write&& write) {
    std::string message;
    std::exception_ptr failure;
    try {
        write();
    } catch (const std::exception& e) {
        failure = std::current_exception();
        message = e.what();
    }
    int failed = failure ? comm.rank() : INT_MAX, first = INT_MAX;
    MPI_Allreduce(&failed, &first, 1, MPI_INT, MPI_MIN, raw(comm));
    if (first == INT_MAX) return;
    broadcast_string(raw(comm), message, first);
    if (failure) std::rethrow_exception(failure);
    throw io_error(context, "", "every process's part written",
                   fmt::format("process {} failed: {}", first, message));
}

} // namespace

void save_sharded(const communicator& comm, const std::filesystem::path& index, const tree& local) {
    const std::string context = "save_sharded " + index.string();
    // Named, not a structured binding: clang 14 does not let the lambdas below capture one.
    const auto flat = flatten_planned(local);
    const auto& leaves = flat.leaves;
    const auto& def = flat.def;
    if (!all_equal(raw(comm), std::hash<treedef>{}(def)))
        detail::throw_value(context, {},
                            "one structure on every process (None where a "
                            "process does not hold a leaf)",
                            "trees of different structures");
    // The writer of each leaf: the lowest process holding an array there.
    std::vector<int> held(leaves.size()), writer(leaves.size());
    for (std::size_t i = 0; i < leaves.size(); ++i)
        held[i] = leaves[i].is_array() ? comm.rank() : INT_MAX;
    MPI_Allreduce(held.data(), writer.data(), static_cast<int>(held.size()), MPI_INT, MPI_MIN,
                  raw(comm));
    std::uint64_t generation = comm.rank() == 0 ? current_generation(index) + 1 : 0;
    MPI_Bcast(&generation, 1, MPI_UINT64_T, 0, raw(comm));
    const std::string stem = shard_stem(index);
    const auto dir = index.parent_path();
    const auto& paths = def.leaf_paths(); // once per save, for the tensor names
    std::vector<std::string> files;
    for (int p = 0; p < comm.size(); ++p)
        files.push_back(shard_name(stem, generation, p, comm.size()));

    // 1. Every process writes its shard (atomically, under this generation's name).
    on_all_or_none(comm, context, [&] {
        std::vector<std::pair<std::string, array>> tensors;
        for (std::size_t i = 0; i < leaves.size(); ++i)
            if (writer[i] == comm.rank())
                tensors.emplace_back(detail::tensor_name(paths[i]), leaves[i].as_array());
        detail::write_safetensors(
            dir / files[static_cast<std::size_t>(comm.rank())], tensors,
            {{"format", "paramtree-shard"}, {"paramtree.generation", std::to_string(generation)}});
    });
    // 2. Process 0 writes the index: the structure (arrays another process holds stand in as
    //    0-d placeholders: the text names tensors, it does not store them) and the weight map.
    on_all_or_none(comm, context, [&] {
        if (comm.rank() != 0) return;
        std::vector<tree> whole = leaves;
        nlohmann::json weight_map = nlohmann::json::object();
        for (std::size_t i = 0; i < whole.size(); ++i) {
            if (writer[i] == INT_MAX) continue; // None on every process: part of the structure
            if (!whole[i].is_array()) whole[i] = tree(array::zeros({}));
            weight_map[detail::tensor_name(paths[i])] = files[static_cast<std::size_t>(writer[i])];
        }
        const tree t = unflatten(def, std::move(whole));
        const auto enc = detail::encode_structure(t, context);
        nlohmann::json meta = detail::structure_metadata(enc);
        meta["paramtree.generation"] = std::to_string(generation);
        meta["paramtree.processes"] = std::to_string(comm.size());
        const std::string text =
            nlohmann::json{{"metadata", meta}, {"weight_map", weight_map}}.dump(1);
        detail::atomic_write(
            index, [&](int fd) { detail::write_all(fd, text.data(), text.size(), index); });
    });
    // 3. The new set is complete and named by the index: the previous generation's shards go.
    if (comm.rank() != 0) return;
    std::error_code ec;
    const std::string prefix = stem + ".g";
    for (const auto& entry : std::filesystem::directory_iterator(dir.empty() ? "." : dir, ec)) {
        const std::string name = entry.path().filename().string();
        const bool ours = name.starts_with(prefix) && name.ends_with(".safetensors") &&
                          name.find("-of-") != std::string::npos;
        if (ours && std::find(files.begin(), files.end(), name) == files.end())
            std::filesystem::remove(entry.path(), ec); // best effort: a leftover is harmless
    }
}

} // namespace paramtree::distributed
