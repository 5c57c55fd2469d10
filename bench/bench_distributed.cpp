// paramtree benchmark — data parallelism over MPI (run by scripts/bench under mpirun -np 2):
// the gradient all-reduce of the demo model (tied, and its untied twin) against an MPI
// ping-pong of the same bytes, the sharded step's reduce-scatter and all-gather, and the
// optimizer-state bytes each process holds, whole and sharded. Process 0
// writes the medians as JSON to the file named by argv[1].
#include "gpt.hpp"

#include <paramtree/distributed.hpp>

#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <vector>

#include <fmt/format.h>

namespace pt = paramtree;
namespace dist = paramtree::distributed;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

template <class F>
double time_median(const dist::communicator& world, int reps, F&& f) {
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        world.barrier();
        const auto start = std::chrono::steady_clock::now();
        f();
        t.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return median(t);
}

// One round trip of `bytes` between processes 0 and 1, halved: the time to move the bytes
// once each way, the least an all-reduce of two processes must pay.
double ping_pong(const dist::communicator& world, std::size_t bytes, int reps) {
    std::vector<char> buffer(bytes);
    const int n = static_cast<int>(bytes);
    return time_median(world, reps, [&] {
        if (world.rank() == 0) {
            MPI_Send(buffer.data(), n, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buffer.data(), n, MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (world.rank() == 1) {
            MPI_Recv(buffer.data(), n, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buffer.data(), n, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
    });
}

// The models here are float32: their trained bytes are their parameter count times four.
std::size_t float_bytes(const pt::tree& t) {
    return pt::count_parameters(t).elements * sizeof(float);
}

} // namespace

int main(int argc, char** argv) {
    const dist::environment mpi(argc, argv);
    const auto world = dist::communicator::world();
    const int reps = 41;
    // The demo's model (vocabulary 76, width 128, 2 blocks): its gradient has the model's
    // structure, so the model itself stands in for it.
    const gpt::config cfg{76, 64, 128, 2, 4, true};
    const pt::tree tied = gpt::make(pt::random::make_key(0), cfg);
    const pt::tree untied = pt::expand(tied);
    dist::allreduce_stats st, su;
    (void)dist::allreduce_mean(world, tied, {}, &st);
    (void)dist::allreduce_mean(world, untied, {}, &su);
    const double t_tied =
        time_median(world, reps, [&] { (void)dist::allreduce_mean(world, tied); });
    const double t_untied =
        time_median(world, reps, [&] { (void)dist::allreduce_mean(world, untied); });
    const double t_small = time_median(
        world, reps, [&] { (void)dist::allreduce_mean(world, tied, {.bucket_bytes = 256 << 10}); });
    const double t_ping = world.size() >= 2 ? ping_pong(world, st.bytes, reps) : 0.0;
    const auto opt = pt::optim::adamw(1e-3);
    const std::size_t state_bytes = float_bytes(opt.init(tied));
    // The sharded step's communication: the gradient reduce-scattered to its owners, then the
    // updated parameters all-gathered from them (ZeRO-2), and the moments each process keeps.
    const auto plan = dist::shard_plan(tied, world.size());
    const pt::tree owned = plan.owned(tied, world.rank());
    dist::allreduce_stats rs, ag;
    (void)dist::reduce_scatter_mean(world, tied, plan, {}, &rs);
    (void)dist::all_gather(world, owned, plan, &ag);
    const double t_rs =
        time_median(world, reps, [&] { (void)dist::reduce_scatter_mean(world, tied, plan); });
    const double t_ag =
        time_median(world, reps, [&] { (void)dist::all_gather(world, owned, plan); });
    // Every process's sharded moments, for the largest.
    std::uint64_t mine = float_bytes(opt.init(owned)), most = 0;
    MPI_Allreduce(&mine, &most, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (world.rank() == 0 && argc > 1) {
        std::ofstream(argv[1]) << fmt::format(
            "{{\"processes\": {}, \"tied_bytes\": {}, \"untied_bytes\": {}, \"tied_buckets\": {}, "
            "\"allreduce_tied_s\": {}, \"allreduce_untied_s\": {}, \"allreduce_small_buckets_s\": "
            "{}, "
            "\"ping_pong_s\": {}, \"optimizer_state_bytes\": {}, \"parameter_bytes\": {}, "
            "\"reduce_scatter_s\": {}, \"reduce_scatter_bytes\": {}, \"all_gather_s\": {}, "
            "\"all_gather_bytes\": {}, \"sharded_state_bytes_max\": {}}}\n",
            world.size(), st.bytes, su.bytes, st.buckets, t_tied, t_untied, t_small, t_ping,
            state_bytes, float_bytes(tied), t_rs, rs.bytes, t_ag, ag.bytes, most);
    }
    return 0;
}
