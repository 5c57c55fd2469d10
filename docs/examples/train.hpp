// paramtree docs — the training loop the seed-model examples share, and their checks.
#pragma once

#include <paramtree/paramtree.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace train {

namespace pt = paramtree;

struct result {
    pt::tree params;
    double first = 0; // loss before training
    double last = 0;  // loss after training
};

/// `steps` optimizer steps on `loss(params)`, a function of the parameter tree alone (data
/// captured). Returns the trained tree and the loss before and after.
template <class Loss>
result fit(pt::tree params, const Loss& loss, const pt::optim::transformation& opt,
           std::size_t steps) {
    const auto step = pt::value_and_grad(loss);
    pt::tree state = opt.init(params);
    result r;
    r.first = loss(pt::expand(params)).item();
    for (std::size_t i = 0; i < steps; ++i) {
        auto [value, grads] = step(params);
        auto [next_params, next] = pt::optim::step(opt, grads, state, params);
        params = std::move(next_params);
        state = std::move(next);
    }
    r.last = loss(pt::expand(params)).item();
    r.params = std::move(params);
    return r;
}

/// Steps from the command line (`example 200`), else `fallback`.
inline std::size_t steps(int argc, char** argv, std::size_t fallback) {
    return argc > 1 ? std::strtoul(argv[1], nullptr, 10) : fallback;
}

/// Prints each check and counts the failures; main returns `exit_code()`.
struct checker {
    int failures = 0;
    void operator()(bool ok, const std::string& what) {
        std::printf("%s %s\n", ok ? "ok:    " : "FAILED:", what.c_str());
        if (!ok) ++failures;
    }
    [[nodiscard]] int exit_code() const { return failures == 0 ? 0 : 1; }
};

} // namespace train
