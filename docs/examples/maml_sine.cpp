// MAML on sine waves (Finn et al., 2017, section 5.1): meta-train a network so that one
// gradient step on ten points of a new sine wave fits that wave. The meta-gradient goes
// through the inner step: `pt::grad` inside the differentiated function records its own
// backward pass (grad of grad), so no first-order approximation is made.
//
//   maml_sine [--steps N] [--check]
//
// Prints the query loss after one adaptation step on held-out tasks, before and after
// meta-training, and (with --check) exits 1 unless meta-training at least halved it.
#include <paramtree/paramtree.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <numbers>
#include <random>
#include <vector>

namespace pt = paramtree;

namespace {

/// One regression task: y = amplitude * sin(x + phase), with support and query points.
struct task {
    pt::array xs, ys, xq, yq;
};

task sample_task(std::mt19937_64& rng, std::size_t k) {
    std::uniform_real_distribution<double> amplitude(0.1, 5.0), phase(0.0, std::numbers::pi),
        x(-5.0, 5.0);
    const double a = amplitude(rng), p = phase(rng);
    auto points = [&](std::vector<float>& xv, std::vector<float>& yv) {
        for (std::size_t i = 0; i < k; ++i) {
            const double at = x(rng);
            xv.push_back(static_cast<float>(at));
            yv.push_back(static_cast<float>(a * std::sin(at + p)));
        }
    };
    std::vector<float> xs, ys, xq, yq;
    points(xs, ys);
    points(xq, yq);
    return {pt::array::from_vector<float>({k, 1}, xs), pt::array::from_vector<float>({k, 1}, ys),
            pt::array::from_vector<float>({k, 1}, xq), pt::array::from_vector<float>({k, 1}, yq)};
}

pt::array mse(const pt::tree& net, const pt::array& x, const pt::array& y) {
    const pt::array d = pt::nn::apply(net, x) - y;
    return pt::mean(d * d);
}

/// One SGD step on the task's support set. Inside a differentiated function the gradient is
/// traced, so the adapted parameters stay a differentiable function of `net`.
pt::tree adapt(const pt::tree& net, const task& t, double inner_lr) {
    const pt::tree g = pt::grad(mse)(net, t.xs, t.ys);
    return pt::tree_map(
        [inner_lr](const pt::tree& w, const pt::tree& dw) {
            return pt::tree(w.as_array() - dw.as_array() * inner_lr);
        },
        net, g);
}

/// The mean query loss after one adaptation step, over `tasks`.
double adapted_loss(const pt::tree& net, const std::vector<task>& tasks, double inner_lr) {
    double total = 0;
    for (const task& t : tasks)
        total += mse(adapt(net, t, inner_lr), t.xq, t.yq).item();
    return total / static_cast<double>(tasks.size());
}

} // namespace

int main(int argc, char** argv) {
    std::size_t steps = 10000, meta_batch = 10, k = 10;
    double inner_lr = 0.01;
    bool check = false;
    CLI::App app{"MAML on sine waves: meta-gradients through an inner gradient step"};
    app.add_option("--steps", steps, "meta-training steps (default 10000)");
    app.add_option("--meta-batch", meta_batch, "tasks per meta-step (default 10)");
    app.add_flag("--check", check, "exit 1 unless meta-training halved the adapted loss");
    CLI11_PARSE(app, argc, argv);
    try {
        // The network of the paper: 1 -> 40 -> 40 -> 1 with ReLU.
        pt::tree net = pt::nn::mlp(pt::random::make_key(0), 1, 1, 40, 2, "relu");
        std::mt19937_64 rng(1), held_out_rng(2);
        std::vector<task> held_out;
        for (int i = 0; i < 100; ++i)
            held_out.push_back(sample_task(held_out_rng, k));
        const double before = adapted_loss(net, held_out, inner_lr);

        auto meta_loss = [&](const pt::tree& p, const std::vector<task>& batch) {
            pt::array total = pt::array::zeros({});
            for (const task& t : batch)
                total = total + mse(adapt(p, t, inner_lr), t.xq, t.yq);
            return total / static_cast<double>(batch.size());
        };
        const pt::optim::transformation opt = pt::optim::adam(1e-3);
        pt::tree state = opt.init(net);
        const auto start = std::chrono::steady_clock::now();
        double recent = 0;
        const std::size_t every = std::max<std::size_t>(1, steps / 5);
        for (std::size_t s = 1; s <= steps; ++s) {
            std::vector<task> batch;
            for (std::size_t i = 0; i < meta_batch; ++i)
                batch.push_back(sample_task(rng, k));
            auto [loss, grads] = pt::value_and_grad(meta_loss)(net, batch);
            auto [updates, next] = opt.update(grads, state, net);
            net = pt::optim::apply_updates(net, updates);
            state = std::move(next);
            recent += loss.item();
            if (s % every == 0) {
                std::cout << fmt::format("step {}/{}  meta loss {:.3f}\n", s, steps,
                                         recent / static_cast<double>(every));
                recent = 0;
            }
        }
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double after = adapted_loss(net, held_out, inner_lr);
        std::cout << fmt::format("meta-trained {} steps of {} tasks in {:.1f} s ({:.2f} ms per "
                                 "step)\n",
                                 steps, meta_batch, seconds, 1e3 * seconds / double(steps));
        std::cout << fmt::format("query loss after one step on 100 held-out tasks: {:.3f} "
                                 "before meta-training, {:.3f} after\n",
                                 before, after);
        if (check && !(after < 0.5 * before)) {
            std::cout.flush();
            std::cerr << "maml_sine: meta-training did not halve the adapted loss\n";
            return 1;
        }
    } catch (const pt::error& e) {
        std::cerr << "maml_sine: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
