// The C++ side of ops_interop.py: runs one operation forward and backward on inputs PyTorch
// wrote, and writes the output and the gradients for PyTorch to compare.
// Usage: ops_interop OP IN OUT [INTS...]
//   conv2d IN OUT sh sw ph pw dh dw groups     (IN: x, w, optional b, r)
//   conv1d IN OUT stride padding dilation groups
//   max_pool2d|avg_pool2d IN OUT kh kw sh sw ph pw   (IN: x, r)
//   batch_norm IN OUT                               (IN: x, w, b, r; training mode)
//   tanh|sigmoid|gelu|gelu_tanh|softmax|log_softmax|cross_entropy|layer_norm|rms_norm|
//   mlp|linear_gelu|linear_gelu_tanh|matmul|pow|divide|attention|gradient_penalty IN OUT
//   tied_batch_norm_train IN OUT steps   (IN: x, t, w1, b1, g, beta, w2, b2: a block
//       Linear -> BatchNorm -> tanh applied twice through a tie, then Linear; `steps` SGD steps
//       of mean squared error at rate 0.1 with apply_with_state; OUT: the parameters and the
//       block's state after them)
// OUT holds y and d_<input> for every input: the gradient of sum(y * r). When IN also holds
// v_<input> arrays, OUT holds hv_<input>: the Hessian of sum(y * r) times v (pt::hvp).
#include <paramtree/paramtree.hpp>
#include <paramtree/conv.hpp>
#include <paramtree/pool.hpp>

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace pt = paramtree;

namespace {

// A tied stateful model trained as docs/models.md says: parameters differentiated, the
// state carried beside them and combined expanded inside the gradient call.
pt::tree tied_batch_norm_train(const std::map<std::string, pt::array>& in, std::size_t steps) {
    namespace nn = pt::nn;
    const auto d = pt::dtype::float64;
    const auto key = pt::random::make_key(0);
    const std::size_t c = in.at("w1").shape()[0];
    pt::tree lin1 = nn::linear(key, c, c, true, d), lin2 = nn::linear(key, c, 1, true, d);
    pt::tree bn = nn::batch_norm(c, 1e-5, 0.1, d);
    lin1 = pt::tree_at(".weight", pt::tree_at(".bias", lin1, in.at("b1")), in.at("w1"));
    lin2 = pt::tree_at(".weight", pt::tree_at(".bias", lin2, in.at("b2")), in.at("w2"));
    bn = pt::tree_at(".weight", pt::tree_at(".bias", bn, in.at("beta")), in.at("g"));
    const pt::tree blk = nn::sequential({lin1, bn, nn::activation("tanh")});
    const pt::tree model = pt::share(nn::sequential({blk, blk, lin2}), ".layers[1]", ".layers[0]");
    auto [params, state] = nn::partition_state(model);
    const pt::array x = in.at("x"), target = in.at("t");
    const auto opt = pt::optim::sgd(0.1);
    pt::tree opt_state = opt.init(params);
    const auto loss = [&](const pt::tree& p, const pt::tree& s) {
        const auto out =
            nn::apply_with_state(pt::combine({p, pt::expand(s)}), x, nn::context::train(key));
        return std::pair{pt::mean(pt::pow(out.y - target, 2.0)), out.model};
    };
    for (std::size_t step = 0; step < steps; ++step) {
        auto [value, updated, grads] = pt::value_and_grad(loss)(params, state);
        auto [updates, next] = opt.update(grads, opt_state, params);
        params = pt::optim::apply_updates(params, updates);
        opt_state = std::move(next);
        state = nn::update_state(state, updated);
    }
    const pt::tree trained = pt::combine({params, state});
    const pt::tree b = trained["layers"][0]["layers"];
    const pt::tree s = b[1]["state"];
    return pt::dict({{"w1", b[0]["weight"]},
                     {"b1", b[0]["bias"]},
                     {"g", b[1]["weight"]},
                     {"beta", b[1]["bias"]},
                     {"w2", trained["layers"][2]["weight"]},
                     {"b2", trained["layers"][2]["bias"]},
                     {"running_mean", s["running_mean"]},
                     {"running_var", s["running_var"]},
                     {"num_batches_tracked", s["num_batches_tracked"].as_array().astype(d)}});
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: ops_interop OP IN OUT [INTS...]\n";
        return 2;
    }
    const std::string op = argv[1];
    std::vector<std::size_t> n;
    for (int i = 4; i < argc; ++i)
        n.push_back(static_cast<std::size_t>(std::stoul(argv[i])));
    try {
        const auto in = pt::load_arrays(argv[2]);
        if (op == "tied_batch_norm_train") {
            pt::save(argv[3], tied_batch_norm_train(in, n.at(0)));
            return 0;
        }
        const pt::array r = in.at("r");
        std::vector<std::pair<std::string, pt::tree>> inputs, directions;
        for (const auto& [name, value] : in) {
            if (name == "r" || name.starts_with("v_")) continue;
            inputs.emplace_back(name, value);
            // v has the gradient's structure: None where nothing is differentiated.
            directions.emplace_back(name, in.contains("v_" + name) ? pt::tree(in.at("v_" + name))
                                                                   : pt::tree());
        }
        const bool has_b = in.contains("b");
        const pt::tree params = pt::dict(inputs);
        auto apply = [&](const pt::tree& p) -> pt::array {
            const pt::array x = p["x"].as_array();
            auto arg = [&](const char* name) { return p[name].as_array(); };
            if (op == "tanh") return pt::tanh(x);
            if (op == "sigmoid") return pt::sigmoid(x);
            if (op == "gelu") return pt::gelu(x);
            if (op == "gelu_tanh") return pt::gelu(x, true);
            if (op == "softmax") return pt::softmax(x, -1);
            if (op == "log_softmax") return pt::log_softmax(x, 0);
            if (op == "cross_entropy") return pt::cross_entropy(x, arg("t"));
            if (op == "layer_norm") return pt::layer_norm(x, arg("w"), arg("b"), 1e-5);
            if (op == "rms_norm") return pt::rms_norm(x, arg("w"), 1e-6);
            if (op == "mlp")
                return pt::linear(pt::tanh(pt::linear(x, arg("w"), arg("b"))), arg("w2"));
            if (op == "linear_gelu") return pt::linear_gelu(x, arg("w"), arg("b"));
            if (op == "linear_gelu_tanh") return pt::linear_gelu(x, arg("w"), arg("b"), true);
            if (op == "matmul") return pt::matmul(x, arg("w"));
            if (op == "pow") return pt::pow(x, arg("w"));
            if (op == "divide") return x / arg("w") + pt::exp(x) * pt::log(arg("w"));
            if (op == "attention")
                return pt::scaled_dot_product_attention(x, arg("k"), arg("vv"), 2,
                                                        {.causal = true});
            if (op == "gradient_penalty") {
                // WGAN-GP: (|d critic / d x| - 1)^2 per row, the critic's gradient taken
                // inside the differentiated function.
                auto critic = [&](const pt::array& at) {
                    return pt::sum(
                        pt::linear(pt::tanh(pt::linear(at, arg("w"), arg("b"))), arg("w2")));
                };
                const pt::array gx = pt::grad(critic)(x).as_array();
                return pt::pow(pt::sqrt(pt::sum(gx * gx, {1}) + 1e-12) - 1.0, 2.0);
            }
            if (op == "conv2d") {
                const pt::conv2d_options o{
                    {n.at(0), n.at(1)}, {n.at(2), n.at(3)}, {n.at(4), n.at(5)}, n.at(6)};
                return has_b ? pt::conv2d(x, p["w"].as_array(), p["b"].as_array(), o)
                             : pt::conv2d(x, p["w"].as_array(), o);
            }
            if (op == "conv1d") {
                const pt::conv1d_options o{n.at(0), n.at(1), n.at(2), n.at(3)};
                return has_b ? pt::conv1d(x, p["w"].as_array(), p["b"].as_array(), o)
                             : pt::conv1d(x, p["w"].as_array(), o);
            }
            const pt::pool2d_options o =
                n.size() == 6 ? pt::pool2d_options{{n[0], n[1]}, {n[2], n[3]}, {n[4], n[5]}}
                              : pt::pool2d_options{};
            if (op == "max_pool2d") return pt::max_pool2d(x, o);
            if (op == "batch_norm") {
                const auto c = x.shape()[1];
                return pt::batch_norm(x, p["w"].as_array(), p["b"].as_array(),
                                      pt::array::zeros({c}, x.dtype()),
                                      pt::array::ones({c}, x.dtype()), true)
                    .y;
            }
            if (op == "avg_pool2d") return pt::avg_pool2d(x, o);
            throw std::runtime_error("unknown op " + op);
        };
        const auto [value, grads] =
            pt::value_and_grad([&](const pt::tree& p) { return pt::sum(apply(p) * r); })(params);
        std::vector<std::pair<std::string, pt::tree>> out{{"y", apply(params)}};
        if (op == "batch_norm") { // the statistics a running average is built from
            const pt::array x = params["x"].as_array();
            const auto c = x.shape()[1];
            const auto bn = pt::batch_norm(x, params["w"].as_array(), params["b"].as_array(),
                                           pt::array::zeros({c}, x.dtype()),
                                           pt::array::ones({c}, x.dtype()), true);
            out.emplace_back("mean", bn.mean);
            out.emplace_back("variance", bn.variance);
        }
        for (const auto& [name, leaf] : inputs)
            if (!grads[name].is_none()) out.emplace_back("d_" + name, grads[name]);
        if (in.contains("v_x")) {
            const pt::tree hv = pt::hvp([&](const pt::tree& p) { return pt::sum(apply(p) * r); },
                                        params, pt::dict(directions));
            for (const auto& [name, leaf] : inputs)
                if (!hv[name].is_none()) out.emplace_back("hv_" + name, hv[name]);
        }
        pt::save(argv[3], pt::dict(out));
    } catch (const std::exception& e) {
        std::cerr << "ops_interop: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
