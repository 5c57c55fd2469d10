// Seed 000 — Flax module reuse: ONE Dense declared once and called twice,
// relu(shared(relu(shared(x)))), on (N, hidden) inputs with the output flattened to N*hidden.
// Flax keeps one params entry (params/shared/{kernel,bias}): 2 leaves, against 4 for two
// separate Dense layers. Trained on a small regression task.
#include "seed_models.hpp"
#include "train.hpp"

#include <iostream>

namespace pt = paramtree;

namespace {
// y = x @ kernel + bias: a Flax Dense (kernel [in, out]).
pt::array dense(const pt::tree& d, const pt::array& x) {
    return pt::matmul(x, d["kernel"].as_array()) + d["bias"].as_array();
}
// The module's __call__: the same Dense twice, then flattened.
pt::array shared_dense(const pt::tree& params, const pt::array& x) {
    const pt::tree d = params["params"]["shared"];
    const pt::array y = pt::relu(dense(d, pt::relu(dense(d, x))));
    return y.reshape({y.size()});
}
} // namespace

int main(int argc, char** argv) {
    const std::size_t n = 8, hidden = 6;
    train::checker check;
    const pt::tree params = seed_models::shared_dense_params(hidden);
    std::cout << pt::pformat(params) << "\n";
    const pt::tree unshared =
        pt::dict({{"params", pt::dict({{"Dense_0", params["params"]["shared"]},
                                       {"Dense_1", params["params"]["shared"]}})}});
    check(params.num_leaves() == 2 && unshared.num_leaves() == 4,
          "2 parameter leaves when shared, 4 for two Dense layers");
    const pt::array x = pt::random::normal(pt::random::make_key(1), {n, hidden});
    check(shared_dense(params, x).shape() == pt::shape_type{n * hidden}, "output is N*hidden");

    // Regression onto a random teacher of the same architecture.
    const pt::tree teacher =
        pt::tree_map([](const pt::tree& w) { return pt::tree(w.as_array() * -3.0 + 0.1); }, params);
    const pt::array y = shared_dense(teacher, x);
    auto loss = [&](const pt::tree& p) {
        const pt::array d = shared_dense(p, x) - y;
        return pt::mean(d * d);
    };
    const auto r = train::fit(params, loss, pt::optim::adam(0.02), train::steps(argc, argv, 200));
    std::cout << "loss " << r.first << " -> " << r.last << "\n";
    check(r.last < r.first * 0.5, "training lowers the loss");
    check(pt::structure(r.params) == pt::structure(params),
          "still one Dense after training: " + pt::to_string(r.params));
    return check.exit_code();
}
