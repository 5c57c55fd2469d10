// Tests for <paramtree/distributed.hpp>, run under `mpirun -np 2` and `-np 3` (tests/meson.build):
// every process runs every case; a failure on any process fails the job.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "gpt.hpp"
#include "tie_model.hpp"

#include <paramtree/autodiff.hpp>
#include <paramtree/checkpoint.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/distributed.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/optim.hpp>
#include <paramtree/path.hpp>
#include <paramtree/print.hpp>
#include <paramtree/random.hpp>
#include <paramtree/shared.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <filesystem>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmath>
#include <numeric>
#include <vector>

namespace pt = paramtree;
namespace dist = paramtree::distributed;

namespace {

// Equinox's language model, (Embedding(weight [V, D]), Linear(weight [V, D], bias [V])), its
// parameters drawn from `seed`; tied: the linear weight is the embedding's.
pt::tree language_model(std::uint32_t seed, bool tied, pt::dtype d = pt::dtype::float32) {
    const auto key = pt::random::fold_in(pt::random::make_key(7), seed);
    const auto m = pt::tuple(
        {pt::record("Embedding",
                    {{"weight", pt::random::normal(pt::random::fold_in(key, 1), {12, 6}, d)}}),
         pt::record("Linear",
                    {{"weight", pt::random::normal(pt::random::fold_in(key, 2), {12, 6}, d)},
                     {"bias", pt::array::zeros({12}, d)}})});
    return tied ? pt::share(m, "[1].weight", "[0].weight") : m;
}

// Mean next-token cross-entropy of the tied-or-not model on rows [first, last) of a batch.
pt::array lm_loss(const pt::tree& m, const pt::array& tokens, const pt::array& targets) {
    const pt::array h = pt::take(m[0]["weight"].as_array(), tokens);
    return pt::cross_entropy(pt::linear(h, m[1]["weight"].as_array(), m[1]["bias"].as_array()),
                             targets);
}

pt::array rows(const std::vector<std::int64_t>& all, std::size_t first, std::size_t last) {
    return pt::array::from_vector<std::int64_t>(
        {last - first}, std::vector<std::int64_t>(all.begin() + static_cast<std::ptrdiff_t>(first),
                                                  all.begin() + static_cast<std::ptrdiff_t>(last)));
}

// The models here are float32: their trained bytes are their parameter count times four.
std::size_t float_bytes(const pt::tree& t) {
    return pt::count_parameters(t).elements * sizeof(float);
}

} // namespace

TEST_CASE("distributed: world and split communicators", "[distributed]") {
    const auto world = dist::communicator::world();
    REQUIRE(world.size() >= 1);
    CHECK(world.rank() < world.size());
    const auto half = world.split(world.rank() % 2, world.rank());
    CHECK(half.size() == (world.size() + (world.rank() % 2 == 0 ? 1 : 0)) / 2);
    CHECK(half.rank() == world.rank() / 2);
    half.barrier();
    world.barrier();
}

TEST_CASE("distributed: broadcast gives every process the root's parameters, tie and all",
          "[distributed]") {
    const auto world = dist::communicator::world();
    const pt::tree mine = language_model(static_cast<std::uint32_t>(world.rank()), true);
    CHECK(dist::identical_on_all(world, mine) == (world.size() == 1));
    const pt::tree params = dist::broadcast(world, mine);
    CHECK(dist::identical_on_all(world, params));
    CHECK(pt::tree_equal(params, language_model(0, true)));
    CHECK(params.kind() == pt::node_kind::shared);
    CHECK(params.num_leaves() == 2);
    const pt::tree full = pt::expand(params);
    CHECK(pt::same_storage(full[0]["weight"].as_array(), full[1]["weight"].as_array()));
    // Another root.
    const pt::tree last = dist::broadcast(world, mine, world.size() - 1);
    CHECK(pt::tree_equal(last, language_model(static_cast<std::uint32_t>(world.size() - 1), true)));
    CHECK_THROWS_AS(dist::broadcast(world, mine, world.size()), pt::value_error);
}

TEST_CASE("distributed: allreduce_mean averages every float leaf, in any bucket size",
          "[distributed]") {
    const auto world = dist::communicator::world();
    const double r = world.rank() + 1.0, n = world.size();
    const pt::tree grads = pt::dict({{"f32", pt::array::full({1000}, r)},
                                     {"f64", pt::array::full({3, 7}, r, pt::dtype::float64)},
                                     {"big", pt::array::full({5000}, 2 * r)},
                                     {"none", pt::tree{}},
                                     {"step", pt::array::scalar<std::int64_t>(world.rank())}});
    const double mean = (n + 1) / 2;
    for (const std::size_t bucket : {std::size_t{64}, std::size_t{4096}, std::size_t{25} << 20}) {
        dist::allreduce_stats stats;
        const pt::tree m = dist::allreduce_mean(world, grads, {.bucket_bytes = bucket}, &stats);
        INFO("bucket bytes " << bucket);
        CHECK(pt::array_equal(m["f32"].as_array(), pt::array::full({1000}, mean)));
        CHECK(pt::array_equal(m["f64"].as_array(),
                              pt::array::full({3, 7}, mean, pt::dtype::float64)));
        CHECK(pt::array_equal(m["big"].as_array(), pt::array::full({5000}, 2 * mean)));
        CHECK(m["none"].is_none());
        CHECK(m["step"].as_array().item() == world.rank()); // not a gradient: unchanged
        CHECK(stats.bytes == 1000 * 4 + 21 * 8 + 5000 * 4);
        if (bucket == 64) CHECK(stats.buckets == (24000 + 63) / 64 + (168 + 63) / 64);
        if (bucket == (std::size_t{25} << 20)) CHECK(stats.buckets == 2); // one per dtype
    }
    // A weighted mean: sum(w * g) / sum(w), here w = rank + 1, g = rank + 1.
    const pt::tree w = dist::allreduce_mean(world, grads, {.weight = r});
    double num = 0, den = 0;
    for (int k = 1; k <= world.size(); ++k)
        num += k * k, den += k;
    CHECK(w["f64"].as_array().item() == Approx(num / den));
    CHECK_THROWS_AS(dist::allreduce_mean(world, grads, {.weight = -1}), pt::value_error);
}

TEST_CASE("distributed: a tied weight is one slot, reduced and sent once",
          "[distributed][sharing]") {
    const auto world = dist::communicator::world();
    // The untied twin holds the same values, each use as a leaf of its own.
    const pt::tree tied = language_model(0, true), untied = pt::expand(tied);
    const auto tokens = pt::array::from_vector<std::int64_t>({4}, {1, 5, 7, 2});
    const auto targets = pt::array::from_vector<std::int64_t>({4}, {5, 7, 2, 11});
    const auto [lt, gt] = pt::value_and_grad(lm_loss)(tied, tokens, targets);
    const auto [lu, gu] = pt::value_and_grad(lm_loss)(untied, tokens, targets);
    dist::allreduce_stats st, su;
    const pt::tree rt = dist::allreduce_mean(world, gt, {}, &st);
    const pt::tree ru = dist::allreduce_mean(world, gu, {}, &su);
    // The bytes sent are exactly the pruned tree's; the untied twin sends the duplicate too.
    CHECK(st.bytes == float_bytes(tied));
    CHECK(su.bytes == float_bytes(untied));
    CHECK(su.bytes - st.bytes == 12 * 6 * 4);
    // The tied gradient is the sum of both uses' gradients, once (not twice, not one use).
    const pt::array both = pt::add(ru[0]["weight"].as_array(), ru[1]["weight"].as_array());
    CHECK(pt::array_equal(rt[0]["weight"].as_array(), both, 1e-6, 1e-6));
}

TEST_CASE("distributed: data-parallel AdamW equals one process on the whole batch",
          "[distributed][optim]") {
    // A global batch of 7 rows split unevenly (4+3 on 2 processes, 3+2+2 on 3): each process
    // weighs its mean gradient by its row count, so the result is the whole batch's mean.
    const auto world = dist::communicator::world();
    const std::vector<std::int64_t> tokens{1, 5, 7, 2, 9, 0, 3}, targets{5, 7, 2, 11, 4, 4, 8};
    const auto opt = pt::optim::adamw(0.05);
    const auto [first, last] = dist::batch_slice(tokens.size(), world);
    pt::tree p =
        dist::broadcast(world, language_model(static_cast<std::uint32_t>(world.rank()), true));
    pt::tree s = opt.init(p);
    pt::tree q = language_model(0, true); // the single-process reference, on every process
    pt::tree sq = opt.init(q);
    for (int step = 0; step < 3; ++step) {
        auto [l, g] =
            pt::value_and_grad(lm_loss)(p, rows(tokens, first, last), rows(targets, first, last));
        g = dist::allreduce_mean(world, g, {.weight = static_cast<double>(last - first)});
        auto [u, next] = opt.update(g, s, p);
        p = pt::optim::apply_updates(p, u);
        s = next;
        auto [lq, gq] = pt::value_and_grad(lm_loss)(q, rows(tokens, 0, 7), rows(targets, 0, 7));
        auto [uq, nq] = opt.update(gq, sq, q);
        q = pt::optim::apply_updates(q, uq);
        sq = nq;
    }
    CHECK(dist::identical_on_all(world, p)); // bitwise: every process applied the same update
    CHECK(dist::identical_on_all(world, s));
    // float32 sums in another order: equal to rounding.
    CHECK(pt::tree_equal(p, q, {.rtol = 1e-5, .atol = 1e-6}));
    CHECK(p.num_leaves() == 2);
}

TEST_CASE("distributed: trees that differ across processes fail on every process, naming the path",
          "[distributed][error]") {
    const auto world = dist::communicator::world();
    if (world.size() < 2) return;
    // Process 1 has another shape: every process throws, none hangs.
    const pt::tree g =
        pt::dict({{"w", pt::array::ones({world.rank() == 1 ? std::size_t{4} : std::size_t{3}})},
                  {"b", pt::array::ones({2})}});
    try {
        (void)dist::allreduce_mean(world, g);
        FAIL("expected structure_error");
    } catch (const pt::structure_error& e) {
        CHECK(e.path() == "['w']");
        CHECK_THAT(e.what(), Catch::Contains("process 1 against process 0") &&
                                 Catch::Contains("f32[3] (as on process 0)") &&
                                 Catch::Contains("f32[4] on process 1"));
    }
    // Another structure on the last process, through broadcast.
    const pt::tree t = world.rank() == world.size() - 1
                           ? pt::dict({{"w", pt::array::ones({3})}})
                           : pt::dict({{"w", pt::array::ones({3})}, {"b", pt::array::ones({2})}});
    CHECK_THROWS_AS(dist::broadcast(world, t), pt::structure_error);
    // A dtype difference.
    const pt::tree d = pt::dict(
        {{"w", pt::array::ones({3}, world.rank() == 0 ? pt::dtype::float32 : pt::dtype::float64)}});
    CHECK_THROWS_WITH(dist::allreduce_mean(world, d), Catch::Contains("at ['w']"));
    world.barrier(); // all processes are still in step
}

TEST_CASE("distributed: batch_slice splits a global batch into disjoint covering slices",
          "[distributed]") {
    const auto world = dist::communicator::world();
    for (const std::size_t global :
         {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{16}}) {
        const auto [first, last] = dist::batch_slice(global, world);
        CHECK(first <= last);
        // Every row is claimed exactly once: sum the row counts and the row indices everywhere.
        const pt::tree mine = pt::dict(
            {{"count", pt::array::full({1}, static_cast<double>(last - first), pt::dtype::float64)},
             {"sum", pt::array::full({1}, (first + last - 1.0) * (last - first) / 2,
                                     pt::dtype::float64)}});
        const pt::tree all = dist::allreduce_mean(world, mine);
        CHECK(all["count"].as_array().item() * world.size() == Approx(static_cast<double>(global)));
        CHECK(all["sum"].as_array().item() * world.size() ==
              Approx(global * (global - 1.0) / 2).margin(1e-9));
    }
}

int main(int argc, char** argv) {
    const dist::environment mpi(argc, argv);
    return Catch::Session().run(argc, argv);
}

namespace {
/// Bytes of the arrays in `t` of rank 1 and up: a model's parameters, or an optimizer state's
/// per-parameter moments (the 0-d step counter, which every process keeps, is left out).
std::size_t array_bytes(const pt::tree& t) {
    std::size_t n = 0;
    for (const pt::tree& leaf : pt::leaves(t))
        if (leaf.is_array() && leaf.as_array().ndim() > 0) n += leaf.as_array().nbytes();
    return n;
}
} // namespace

TEST_CASE("distributed: a shard plan owns each pruned leaf once, a tie as one, balanced",
          "[distributed][shard]") {
    const pt::tree model = language_model(3, true);
    for (const int n : {1, 2, 3, 5, 64}) {
        const dist::sharding plan = dist::shard_plan(model, n);
        INFO(plan.to_string());
        // Every array leaf of the pruned tree, once; the tied embedding is one of them.
        std::size_t arrays = 0;
        for (const pt::tree& leaf : pt::leaves(model))
            arrays += leaf.is_array();
        REQUIRE(plan.leaves.size() == arrays);
        const auto tie =
            std::find_if(plan.leaves.begin(), plan.leaves.end(),
                         [](const dist::shard_entry& e) { return !e.also_at.empty(); });
        REQUIRE(tie != plan.leaves.end());
        CHECK(pt::keystr(tie->where) == "[0].weight");
        CHECK(pt::keystr(tie->also_at.at(0)) == "[1].weight");
        // Bytes add up; no process holds more than the greedy bound allows.
        const std::size_t total =
            std::accumulate(plan.bytes.begin(), plan.bytes.end(), std::size_t{0});
        CHECK(total == array_bytes(model));
        std::size_t largest = 0;
        for (const auto& e : plan.leaves)
            largest = std::max(largest, e.bytes);
        const double mean = double(total) / n;
        CHECK(double(*std::max_element(plan.bytes.begin(), plan.bytes.end())) <=
              std::max(mean * 4.0 / 3.0, double(largest)) + 1);
        // Every process computes the same plan (it is a pure function of the tree).
        CHECK(dist::shard_plan(model, n).to_string() == plan.to_string());
        // Optimizer state per process: what it owns only; the shards add up to the whole.
        const auto adamw = pt::optim::adamw(1e-3);
        const std::size_t full = array_bytes(adamw.init(model));
        std::size_t sum = 0, most = 0;
        for (int p = 0; p < n; ++p) {
            const std::size_t mine = array_bytes(adamw.init(plan.owned(model, p)));
            sum += mine;
            most = std::max(most, mine);
        }
        CHECK(sum == full);
        CHECK(double(most) <= std::max(double(full) / n * 4.0 / 3.0, 2.0 * double(largest)) + 64);
        if (n == 64) // more processes than leaves: some own nothing
            CHECK(std::count(plan.bytes.begin(), plan.bytes.end(), std::size_t{0}) > 0);
    }
}

TEST_CASE("distributed: shard plans refuse bad input naming it", "[distributed][shard][errors]") {
    const pt::tree model = language_model(4, true);
    CHECK_THROWS_AS(dist::shard_plan(model, 0), pt::value_error);
    const dist::sharding plan = dist::shard_plan(model, 2);
    CHECK_THROWS_AS(plan.owned(language_model(4, false), 0), pt::structure_error);
    CHECK_THROWS_WITH(plan.owned(language_model(4, false), 0),
                      Catch::StartsWith("sharding::owned: structure mismatch"));
}

namespace {
/// `steps` AdamW steps on rows [first, last) of a global batch, sharded ZeRO-2 style:
/// reduce-scatter the gradient to its owners, each owner updates its leaves, all-gather.
/// Returns the parameters and this process's optimizer state.
template <class Loss>
std::pair<pt::tree, pt::tree>
sharded_training(const dist::communicator& world, pt::tree p, const Loss& loss, std::size_t first,
                 std::size_t last, int steps, std::size_t* bytes = nullptr,
                 const pt::optim::transformation& opt = pt::optim::adamw(0.05)) {
    const auto plan = dist::shard_plan(p, world.size());
    pt::tree state = opt.init(plan.owned(p, world.rank()));
    for (int step = 0; step < steps; ++step) {
        auto [l, g] = pt::value_and_grad(loss)(p, first, last);
        dist::allreduce_stats stats;
        const pt::tree mine = dist::reduce_scatter_mean(
            world, g, plan, {.weight = static_cast<double>(last - first)}, &stats);
        if (bytes != nullptr) *bytes = stats.bytes;
        // What each owner received is the all-reduced mean at its leaves (to rounding: the
        // two collectives may sum in another order).
        const pt::tree everywhere = plan.owned(
            dist::allreduce_mean(world, g, {.weight = static_cast<double>(last - first)}),
            world.rank());
        CHECK(pt::tree_equal(mine, everywhere, {.rtol = 1e-6, .atol = 1e-7}));
        const pt::tree owned = plan.owned(p, world.rank());
        auto [u, next] = opt.update(mine, state, owned);
        state = next;
        p = dist::all_gather(world, pt::optim::apply_updates(owned, u), plan);
    }
    return {p, state};
}
} // namespace

TEST_CASE("distributed: sharded AdamW (reduce-scatter, owner update, all-gather) equals one "
          "process",
          "[distributed][shard][optim]") {
    const auto world = dist::communicator::world();
    const std::vector<std::int64_t> tokens{1, 5, 7, 2, 9, 0, 3}, targets{5, 7, 2, 11, 4, 4, 8};
    auto loss = [&](const pt::tree& m, std::size_t first, std::size_t last) {
        return lm_loss(m, rows(tokens, first, last), rows(targets, first, last));
    };
    const auto [first, last] = dist::batch_slice(tokens.size(), world);
    const pt::tree start = dist::broadcast(world, language_model(3, true));
    std::size_t bytes = 0;
    const auto [p, state] = sharded_training(world, start, loss, first, last, 3, &bytes);
    // The single-process reference, on every process.
    const auto [q, unused] =
        sharded_training(dist::communicator::world().split(world.rank()), start, loss, 0, 7, 3);
    CHECK(dist::identical_on_all(world, p));
    CHECK(pt::tree_equal(p, q, {.rtol = 1e-5, .atol = 1e-6}));
    CHECK(p.num_leaves() == 2); // the tie held
    // The tie is one slot: the reduce-scatter summed each float of the pruned tree once.
    CHECK(bytes == float_bytes(start));
    // Each process keeps moments only for what it owns (the tied LM has two leaves: with
    // three processes one owns nothing and keeps no moments at all).
    const auto plan = dist::shard_plan(start, world.size());
    const std::size_t own_bytes = plan.bytes[static_cast<std::size_t>(world.rank())];
    CHECK(float_bytes(state) == 2 * own_bytes); // first and second moments
}

TEST_CASE("distributed: the demo's GPT trained sharded equals single-process training",
          "[distributed][shard][optim]") {
    const auto world = dist::communicator::world();
    const gpt::config c{.vocab = 16, .context = 8, .dim = 16, .layers = 2, .heads = 2};
    const pt::tree start = dist::broadcast(world, gpt::make(pt::random::make_key(5), c));
    const std::size_t batch = 5;
    std::vector<std::int64_t> all(batch * (c.context + 1));
    for (std::size_t i = 0; i < all.size(); ++i)
        all[i] = static_cast<std::int64_t>((i * 7 + i / 3) % c.vocab);
    auto loss = [&](const pt::tree& m, std::size_t first, std::size_t last) {
        std::vector<std::int64_t> in, out;
        for (std::size_t b = first; b < last; ++b)
            for (std::size_t t = 0; t < c.context; ++t) {
                in.push_back(all[b * (c.context + 1) + t]);
                out.push_back(all[b * (c.context + 1) + t + 1]);
            }
        const pt::shape_type s{last - first, c.context};
        return gpt::loss(m, pt::array::from_vector<std::int64_t>(s, in),
                         pt::array::from_vector<std::int64_t>(s, out));
    };
    // SGD with momentum: the update is linear in the gradient, so the two runs agree to
    // float32 rounding. (With Adam, a parameter whose gradient is ~0 moves by ±lr on the sign
    // of rounding noise; the small model above checks AdamW itself.)
    const auto opt = pt::optim::sgd(0.1, 0.9);
    const auto [first, last] = dist::batch_slice(batch, world);
    const auto [p, state] = sharded_training(world, start, loss, first, last, 3, nullptr, opt);
    const auto [q, unused] = sharded_training(dist::communicator::world().split(world.rank()),
                                              start, loss, 0, batch, 3, nullptr, opt);
    CHECK(dist::identical_on_all(world, p));
    CHECK(pt::tree_equal(p, q, {.rtol = 1e-5, .atol = 1e-6}));
    CHECK(p.num_leaves() == start.num_leaves()); // the tied head is still one leaf
    // About 1/n of the momentum per process.
    const auto total = float_bytes(start);
    const auto mine = float_bytes(state);
    INFO("momentum " << mine << " of " << total);
    CHECK(mine < total / static_cast<std::size_t>(world.size()) * 5 / 4 + 64);
}

TEST_CASE("distributed: sharded steps refuse a wrong plan, tree or owned leaf, naming it",
          "[distributed][shard][errors]") {
    const auto world = dist::communicator::world();
    const pt::tree m = language_model(1, true);
    const auto plan = dist::shard_plan(m, world.size());
    const auto wrong = dist::shard_plan(m, world.size() + 1);
    CHECK_THROWS_AS(dist::reduce_scatter_mean(world, m, wrong), pt::value_error);
    CHECK_THROWS_AS(dist::reduce_scatter_mean(world, language_model(1, false), plan),
                    pt::structure_error);
    // The owner of the embedding passes None for it: the error names the leaf there, and the
    // other processes are told which process and leaf instead of waiting in the collective.
    const int owner = plan.leaves[0].owner;
    pt::tree owned = plan.owned(m, world.rank());
    if (world.rank() == owner) owned = pt::tree_at(plan.leaves[0].where, owned, pt::tree{});
    try {
        (void)dist::all_gather(world, owned, plan);
        FAIL("all_gather accepted a missing owned leaf");
    } catch (const pt::leaf_error& e) {
        CHECK(world.rank() == owner);
        CHECK(e.path() == pt::keystr(plan.leaves[0].where));
    } catch (const pt::value_error& e) {
        CHECK(world.rank() != owner);
        CHECK(std::string(e.what()).find(pt::keystr(plan.leaves[0].where)) != std::string::npos);
    }
}

namespace {
/// A directory every process of `comm` names the same (process 0's pid), emptied first.
std::filesystem::path shared_directory(const dist::communicator& comm, const std::string& tag) {
    const pt::tree pid = dist::broadcast(
        comm, pt::tree(pt::array::scalar<std::int64_t>(static_cast<std::int64_t>(::getpid()))));
    const auto dir = std::filesystem::temp_directory_path() /
                     ("pt-shards-" + tag + "-" +
                      std::to_string(static_cast<std::int64_t>(pid.as_array().item())));
    if (comm.rank() == 0) {
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    comm.barrier();
    return dir;
}

std::size_t files_in(const std::filesystem::path& dir) {
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir),
                                                  std::filesystem::directory_iterator{}));
}
} // namespace

TEST_CASE("distributed: a sharded checkpoint saves each leaf once and reshards on load",
          "[distributed][shard][checkpoint]") {
    const auto world = dist::communicator::world();
    const auto dir = shared_directory(world, "reshard");
    const auto index = dir / "model.safetensors.index.json";
    const gpt::config c{.vocab = 16, .context = 8, .dim = 16, .layers = 2, .heads = 2};
    const pt::tree params = dist::broadcast(world, gpt::make(pt::random::make_key(9), c));

    // Saved on every process of the world: one shard file per process plus the index.
    const auto plan = dist::shard_plan(params, world.size());
    dist::save_sharded(world, index, plan.owned(params, world.rank()));
    world.barrier();
    const pt::tree back = pt::load_tree(index);
    CHECK(pt::tree_equal(back, params)); // exactly, tie and static fields included
    CHECK(pt::structure(back) == pt::structure(params));
    CHECK(pt::tree_equal(pt::load(index, params), params));
    CHECK(files_in(dir) == static_cast<std::size_t>(world.size()) + 1);
    // Every tensor of the pruned tree is in exactly one shard: the tied head is not stored.
    std::size_t tensors = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.path().extension() == ".safetensors")
            tensors += pt::load_arrays(entry.path()).size();
    CHECK(tensors == pt::count_parameters(params).arrays);

    // Resharding: saved by two processes, then by all of them, then by one, each time loaded
    // whole. (With two processes in the world the "two" are the world itself.)
    const auto pair = world.split(world.rank() < 2 ? 0 : 1);
    if (world.rank() < 2) {
        const auto two = dist::shard_plan(params, pair.size());
        dist::save_sharded(pair, index, two.owned(params, pair.rank()));
    }
    world.barrier();
    const pt::tree from_two = pt::load_tree(index);
    CHECK(pt::tree_equal(from_two, params));
    dist::save_sharded(world, index, plan.owned(from_two, world.rank()));
    world.barrier();
    CHECK(pt::tree_equal(pt::load_tree(index), params));
    const auto alone = world.split(world.rank());
    if (world.rank() == 0) dist::save_sharded(alone, index, pt::load_tree(index));
    world.barrier();
    CHECK(pt::tree_equal(pt::load_tree(index), params));
    CHECK(files_in(dir) == 2); // the index and the one process's shard: old generations gone

    // A single-process checkpoint loads into a sharded run.
    if (world.rank() == 0) pt::save(dir / "single.safetensors", params);
    world.barrier();
    const pt::tree mine = plan.owned(pt::load_tree(dir / "single.safetensors"), world.rank());
    CHECK(pt::tree_equal(dist::all_gather(world, mine, plan), params));
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("distributed: a sharded optimizer state saves and loads whole",
          "[distributed][shard][checkpoint]") {
    const auto world = dist::communicator::world();
    const auto dir = shared_directory(world, "state");
    const pt::tree params = dist::broadcast(world, language_model(4, true));
    const auto plan = dist::shard_plan(params, world.size());
    const auto opt = pt::optim::adamw(0.01);
    // One step's moments at the owned leaves (a gradient of ones).
    const pt::tree owned = plan.owned(params, world.rank());
    const pt::tree ones = pt::tree_map(
        [](const pt::tree& l) {
            return pt::tree(pt::array::ones(l.as_array().shape(), l.as_array().dtype()));
        },
        owned);
    const auto [u, state] = opt.update(ones, opt.init(owned), owned);
    dist::save_sharded(world, dir / "state.index.json", state);
    world.barrier();
    const pt::tree whole = pt::load_tree(dir / "state.index.json");
    // The single-process state after the same step, every moment present.
    const pt::tree all_ones = pt::tree_map(
        [](const pt::tree& l) {
            return pt::tree(pt::array::ones(l.as_array().shape(), l.as_array().dtype()));
        },
        params);
    const auto [uq, reference] = opt.update(all_ones, opt.init(params), params);
    CHECK(pt::tree_equal(whole, reference));
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("distributed: a sharded save that fails anywhere fails everywhere and keeps the "
          "previous checkpoint",
          "[distributed][shard][checkpoint][errors]") {
    const auto world = dist::communicator::world();
    const auto dir = shared_directory(world, "atomic");
    const auto index = dir / "model.safetensors.index.json";
    const pt::tree before = dist::broadcast(world, language_model(5, true));
    const auto plan = dist::shard_plan(before, world.size());
    dist::save_sharded(world, index, plan.owned(before, world.rank()));
    world.barrier();
    // The last process cannot write its next shard: a directory sits at its file name
    // (generation 2), as if the disk refused it.
    const int last = world.size() - 1;
    if (world.rank() == 0)
        std::filesystem::create_directories(
            dir / fmt::format("model.g2-{:05}-of-{:05}.safetensors", last + 1, world.size()));
    world.barrier();
    const pt::tree after = language_model(6, true);
    try {
        dist::save_sharded(world, index, plan.owned(after, world.rank()));
        FAIL("a failed shard write was not reported");
    } catch (const pt::error& e) {
        // The failing process reports its own error; the others name it.
        if (world.rank() != last)
            CHECK(std::string(e.what()).find(fmt::format("process {}", last)) != std::string::npos);
    }
    world.barrier();
    CHECK(pt::tree_equal(pt::load_tree(index), before)); // the previous set, intact
    // Mixed structures are refused on every process before anything is written.
    const pt::tree odd = world.rank() == 0 ? language_model(5, false) : language_model(5, true);
    CHECK_THROWS_AS(dist::save_sharded(world, index, odd), pt::value_error);
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("distributed: random tied trees shard, save sharded and reshard as they are",
          "[distributed][shard][tie_model]") {
    // The tie model's generator (tests/tie_model.hpp), every process building the same trees:
    // a shard plan owns each pruned leaf once (a tie group is one leaf), all_gather of the
    // owned pieces is the tree, and a sharded save loads back whole, into a like, and as a
    // sub-model — saved by the world and again by one process (resharded).
    const auto world = dist::communicator::world();
    const auto dir = shared_directory(world, "tie-model");
    const auto index = dir / "model.safetensors.index.json";
    const auto alone = world.split(world.rank());
    std::size_t checked = 0, with_ties = 0, refused = 0;
    for (std::uint64_t seed = 0; seed < 400; ++seed) {
        const auto c = tie_model::random_case(seed);
        tie_model::model m;
        m.base = tie_model::build_untied(c.tree.base);
        const pt::tree t = tie_model::build_tied(c.tree, m, {}, nullptr);
        const auto where = [&] { return fmt::format("seed {}\n{}", seed, tie_model::cpp_case(c)); };
        try {
            const auto plan = dist::shard_plan(t, world.size());
            const auto pruned = pt::leaves(t);
            const auto arrays = static_cast<std::size_t>(std::count_if(
                pruned.begin(), pruned.end(), [](const pt::tree& l) { return l.is_array(); }));
            if (plan.leaves.size() != arrays)
                FAIL_CHECK("a plan entry per pruned array leaf: " << where());
            const pt::tree owned = plan.owned(t, world.rank());
            if (!pt::tree_equal(dist::all_gather(world, owned, plan), t))
                FAIL_CHECK("all_gather(owned pieces) == t: " << where());
            dist::save_sharded(world, index, owned);
            world.barrier();
            if (!pt::tree_equal(pt::load_tree(index), t))
                FAIL_CHECK("load_tree(sharded) == t: " << where());
            if (!pt::tree_equal(pt::load(index, t), t))
                FAIL_CHECK("load(sharded, t) == t: " << where());
            std::vector<pt::path> paths;
            tie_model::node_paths(pt::expand(t), {}, paths);
            const pt::path p = paths[seed % paths.size()];
            std::optional<pt::tree> in_memory, from_file;
            try {
                in_memory = pt::extract(t, p);
            } catch (const pt::error&) {
            }
            try {
                from_file = pt::load_extract(index, p);
            } catch (const pt::error&) {
            }
            if (in_memory.has_value() != from_file.has_value() ||
                (in_memory && !pt::tree_equal(*in_memory, *from_file)))
                FAIL_CHECK("load_extract(sharded, p) == extract(t, p) at " << pt::keystr(p) << ": "
                                                                           << where());
            world.barrier();
            if (world.rank() == 0) dist::save_sharded(alone, index, t); // resharded to one
            world.barrier();
            if (!pt::tree_equal(pt::load_tree(index), t))
                FAIL_CHECK("resharded load == t: " << where());
            world.barrier();
            ++checked;
            with_ties += pt::ties(t).empty() ? 0 : 1;
        } catch (const pt::error& e) {
            if (!tie_model::documented(e)) FAIL_CHECK(e.what() << ": " << where());
            ++refused;
            world.barrier();
        }
    }
    CAPTURE(checked, with_ties, refused);
    CHECK(checked > 330);
    CHECK(with_ties > 55);
    if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("distributed: the paramtree command inspects, verifies and diffs a sharded index",
          "[distributed][shard][command]") {
    const char* command = std::getenv("PT_COMMAND");
    if (command == nullptr || *command == '\0') return; // built without the command (no CLI11)
    const auto world = dist::communicator::world();
    const auto dir = shared_directory(world, "command");
    const auto index = dir / "model.safetensors.index.json";
    const pt::tree params = language_model(3, true);
    const auto plan = dist::shard_plan(params, world.size());
    dist::save_sharded(world, index, plan.owned(params, world.rank()));
    world.barrier();
    if (world.rank() == 0) {
        const auto run = [&](const std::string& args) {
            const std::string out = (dir / "out.txt").string();
            const int rc =
                std::system(fmt::format("'{}' {} > '{}' 2>&1", command, args, out).c_str());
            std::ifstream in(out);
            return std::pair{WEXITSTATUS(rc), std::string(std::istreambuf_iterator<char>(in), {})};
        };
        const auto [inspect_rc, inspected] = run("inspect '" + index.string() + "'");
        CHECK(inspect_rc == 0);
        CHECK(inspected.find("sharded index with paramtree structure format 3") !=
              std::string::npos);
        CHECK(inspected.find("1 tie (each tied value stored once") != std::string::npos);
        const auto [verify_rc, verified] = run("verify '" + index.string() + "'");
        CHECK(verify_rc == 0);
        CHECK(verified.find("valid (") != std::string::npos);
        pt::save(dir / "whole.safetensors", params);
        const auto [diff_rc, diffed] =
            run("diff '" + index.string() + "' '" + (dir / "whole.safetensors").string() + "'");
        CHECK(diff_rc == 0);
        CHECK(diffed.find("the files hold the same values (compared by names and structure") !=
              std::string::npos);
        // A shard gone: the index no longer verifies.
        for (const auto& entry : std::filesystem::directory_iterator(dir))
            if (entry.path().filename().string().find("-00001-of-") != std::string::npos)
                std::filesystem::remove(entry.path());
        CHECK(run("verify '" + index.string() + "'").first == 1);
    }
    world.barrier();
    if (world.rank() == 0) std::filesystem::remove_all(dir);
}
