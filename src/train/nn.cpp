// paramtree — the built-in modules: constructors (PyTorch's initialisation) and `nn::apply`.
#include <paramtree/error.hpp>
#include <paramtree/attention.hpp>
#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/conv.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/shared.hpp>

#include <paramtree/detail/errors.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdint>

#include <fmt/format.h>

namespace paramtree::detail {
struct state_updates {
    /// By state_key: one entry per state, however many positions and copies of the model hold it.
    std::map<const void*, tree> updated;
};
} // namespace paramtree::detail

namespace paramtree::nn {

// ---- context -------------------------------------------------------------------------------

context context::child(path_entry e) const {
    context c = *this;
    c.where.push_back(std::move(e));
    return c;
}
context context::child(std::string_view name) const {
    return child(path_entry{field_key{std::string(name)}});
}
context context::child(std::size_t i) const {
    return child(path_entry{index_key{i}});
}

random::key context::module_key() const {
    if (!key)
        detail::throw_leaf("nn::apply", where, "a context key (dropout while training)",
                           "no key in the context");
    // FNV-1a of the path text: the same module gets the same stream on every machine.
    std::uint32_t h = 2166136261u;
    for (const char c : keystr(where)) {
        h ^= static_cast<unsigned char>(c);
        h *= 16777619u;
    }
    return random::fold_in(*key, h);
}

// ---- constructors --------------------------------------------------------------------------

namespace {
std::int64_t as_int(std::size_t n) {
    return static_cast<std::int64_t>(n);
}

bool known_activation(const std::string& fn) {
    return fn == "relu" || fn == "gelu" || fn == "gelu_tanh" || fn == "tanh" || fn == "sigmoid" ||
           fn == "identity";
}

void check_activation(const std::string& fn) {
    if (!known_activation(fn))
        detail::throw_leaf("nn::activation", {}, "relu, gelu, gelu_tanh, tanh, sigmoid or identity",
                           "'" + fn + "'");
}
} // namespace

tree linear(const random::key& key, std::size_t in, std::size_t out, bool bias, dtype d) {
    // PyTorch: kaiming_uniform(a = sqrt(5)) for the weight and U(±1/sqrt(in)) for the bias,
    // both bounded by 1/sqrt(in).
    const double bound = in == 0 ? 0.0 : 1.0 / std::sqrt(static_cast<double>(in));
    const auto ks = random::split(key, 2);
    const tree w = bound == 0 ? tree(array::zeros({out, in}, d))
                              : tree(random::uniform(ks[0], {out, in}, -bound, bound, d));
    const tree b = !bias        ? tree{}
                   : bound == 0 ? tree(array::zeros({out}, d))
                                : tree(random::uniform(ks[1], {out}, -bound, bound, d));
    return detail::reserved_record("pt.nn.Linear", {{"weight", w}, {"bias", b}},
                                   {{"in_features", as_int(in)}, {"out_features", as_int(out)}});
}

tree embedding(const random::key& key, std::size_t num, std::size_t dim, dtype d) {
    return detail::reserved_record(
        "pt.nn.Embedding", {{"weight", random::normal(key, {num, dim}, d)}},
        {{"num_embeddings", as_int(num)}, {"embedding_dim", as_int(dim)}});
}

tree layer_norm(std::size_t dim, double eps, dtype d) {
    return detail::reserved_record(
        "pt.nn.LayerNorm", {{"weight", array::ones({dim}, d)}, {"bias", array::zeros({dim}, d)}},
        {{"dim", as_int(dim)}, {"eps", eps}});
}

tree rms_norm(std::size_t dim, double eps, dtype d) {
    return detail::reserved_record("pt.nn.RMSNorm", {{"weight", array::ones({dim}, d)}},
                                   {{"dim", as_int(dim)}, {"eps", eps}});
}

namespace {
/// Weight and bias uniform in ±1/sqrt(fan_in): PyTorch's kaiming_uniform(a = sqrt(5)) for
/// the weight and its bias rule, as for Linear.
std::pair<tree, tree> conv_parameters(const random::key& key, shape_type weight_shape,
                                      std::size_t fan_in, bool bias, dtype d) {
    const double bound = fan_in == 0 ? 0.0 : 1.0 / std::sqrt(static_cast<double>(fan_in));
    const std::size_t out = weight_shape[0];
    const auto ks = random::split(key, 2);
    tree w(random::uniform(ks[0], std::move(weight_shape), -bound, bound, d));
    tree b = bias ? tree(random::uniform(ks[1], {out}, -bound, bound, d)) : tree{};
    return {std::move(w), std::move(b)};
}

void check_conv_channels(const char* what, std::size_t in, std::size_t out, std::size_t groups) {
    if (groups == 0 || in % groups != 0 || out % groups != 0)
        detail::throw_shape(what, "groups dividing the input and the output channels",
                            fmt::format("{} in, {} out, {} groups", in, out, groups));
}
} // namespace

tree conv2d(const random::key& key, std::size_t in, std::size_t out,
            std::array<std::size_t, 2> kernel, const conv2d_options& o, bool bias, dtype d) {
    check_conv_channels("nn::conv2d", in, out, o.groups);
    auto [w, b] = conv_parameters(key, {out, in / o.groups, kernel[0], kernel[1]},
                                  in / o.groups * kernel[0] * kernel[1], bias, d);
    return detail::reserved_record("pt.nn.Conv2d",
                                   {{"weight", std::move(w)}, {"bias", std::move(b)}},
                                   {{"in_channels", as_int(in)},
                                    {"out_channels", as_int(out)},
                                    {"kernel_h", as_int(kernel[0])},
                                    {"kernel_w", as_int(kernel[1])},
                                    {"stride_h", as_int(o.stride[0])},
                                    {"stride_w", as_int(o.stride[1])},
                                    {"padding_h", as_int(o.padding[0])},
                                    {"padding_w", as_int(o.padding[1])},
                                    {"dilation_h", as_int(o.dilation[0])},
                                    {"dilation_w", as_int(o.dilation[1])},
                                    {"groups", as_int(o.groups)}});
}

tree conv1d(const random::key& key, std::size_t in, std::size_t out, std::size_t kernel,
            const conv1d_options& o, bool bias, dtype d) {
    check_conv_channels("nn::conv1d", in, out, o.groups);
    auto [w, b] =
        conv_parameters(key, {out, in / o.groups, kernel}, in / o.groups * kernel, bias, d);
    return detail::reserved_record("pt.nn.Conv1d",
                                   {{"weight", std::move(w)}, {"bias", std::move(b)}},
                                   {{"in_channels", as_int(in)},
                                    {"out_channels", as_int(out)},
                                    {"kernel", as_int(kernel)},
                                    {"stride", as_int(o.stride)},
                                    {"padding", as_int(o.padding)},
                                    {"dilation", as_int(o.dilation)},
                                    {"groups", as_int(o.groups)}});
}

namespace {
tree pool(const char* name, const pool2d_options& o) {
    const auto stride = [&](std::size_t a) { return o.stride[a] == 0 ? o.kernel[a] : o.stride[a]; };
    return detail::reserved_record(name, {},
                                   {{"kernel_h", as_int(o.kernel[0])},
                                    {"kernel_w", as_int(o.kernel[1])},
                                    {"stride_h", as_int(stride(0))},
                                    {"stride_w", as_int(stride(1))},
                                    {"padding_h", as_int(o.padding[0])},
                                    {"padding_w", as_int(o.padding[1])}});
}
} // namespace

tree max_pool2d(const pool2d_options& options) {
    return pool("pt.nn.MaxPool2d", options);
}
tree avg_pool2d(const pool2d_options& options) {
    return pool("pt.nn.AvgPool2d", options);
}
tree flatten() {
    return detail::reserved_record("pt.nn.Flatten", {});
}

namespace {
/// BatchNorm's state record: the one place its fields are named.
tree batch_norm_state(array running_mean, array running_var, std::int64_t batches) {
    return detail::reserved_record(
        "pt.nn.State", {{"running_mean", std::move(running_mean)},
                        {"running_var", std::move(running_var)},
                        {"num_batches_tracked", array::full({}, double(batches), dtype::int64)}});
}
} // namespace

tree batch_norm(std::size_t channels, double eps, double momentum, dtype d) {
    if (!(momentum >= 0 && momentum <= 1))
        detail::throw_shape("nn::batch_norm", "a momentum in [0, 1]", fmt::format("{}", momentum));
    const tree state = batch_norm_state(array::zeros({channels}, d), array::ones({channels}, d), 0);
    return detail::reserved_record(
        "pt.nn.BatchNorm",
        {{"weight", array::ones({channels}, d)},
         {"bias", array::zeros({channels}, d)},
         {"state", state}},
        {{"channels", as_int(channels)}, {"eps", eps}, {"momentum", momentum}});
}

tree dropout(double rate) {
    if (!(rate >= 0 && rate < 1))
        detail::throw_shape("nn::dropout", "a rate in [0, 1)", fmt::format("{}", rate));
    return detail::reserved_record("pt.nn.Dropout", {}, {{"rate", rate}});
}

tree activation(std::string fn) {
    check_activation(fn);
    return detail::reserved_record("pt.nn.Activation", {}, {{"fn", std::move(fn)}});
}

tree mlp(const random::key& key, std::size_t in, std::size_t out, std::size_t width,
         std::size_t depth, std::string act, dtype d) {
    check_activation(act);
    const auto ks = random::split(key, depth + 1);
    std::vector<tree> layers;
    for (std::size_t i = 0; i <= depth; ++i)
        layers.push_back(linear(ks[i], i == 0 ? in : width, i == depth ? out : width, true, d));
    return detail::reserved_record("pt.nn.MLP", {{"layers", list(std::move(layers))}},
                                   {{"in_size", as_int(in)},
                                    {"out_size", as_int(out)},
                                    {"width_size", as_int(width)},
                                    {"depth", as_int(depth)},
                                    {"activation", std::move(act)}});
}

tree sequential(std::vector<tree> layers) {
    return detail::reserved_record("pt.nn.Sequential", {{"layers", list(std::move(layers))}});
}

tree multi_head_attention(const random::key& key, std::size_t dim, std::size_t heads, bool causal,
                          double dropout_rate, dtype d) {
    if (heads == 0 || dim % heads != 0)
        detail::throw_shape("nn::multi_head_attention", "a number of heads that divides dim",
                            fmt::format("{} heads for dim {}", heads, dim));
    (void)dropout(dropout_rate); // validates the rate
    const auto ks = random::split(key, 4);
    return detail::reserved_record("pt.nn.MultiHeadAttention",
                                   {{"q", linear(ks[0], dim, dim, true, d)},
                                    {"k", linear(ks[1], dim, dim, true, d)},
                                    {"v", linear(ks[2], dim, dim, true, d)},
                                    {"o", linear(ks[3], dim, dim, true, d)}},
                                   {{"dim", as_int(dim)},
                                    {"heads", as_int(heads)},
                                    {"causal", causal},
                                    {"dropout", dropout_rate}});
}

tree transformer_block(const random::key& key, std::size_t dim, std::size_t heads,
                       std::size_t hidden, double dropout_rate, dtype d) {
    if (hidden == 0) hidden = 4 * dim;
    const auto ks = random::split(key, 3);
    return detail::reserved_record(
        "pt.nn.TransformerBlock",
        {{"norm1", layer_norm(dim, 1e-5, d)},
         {"attn", multi_head_attention(ks[0], dim, heads, true, dropout_rate, d)},
         {"norm2", layer_norm(dim, 1e-5, d)},
         {"mlp", sequential({linear(ks[1], dim, hidden, true, d), activation("gelu_tanh"),
                             linear(ks[2], hidden, dim, true, d)})},
         {"dropout", dropout(dropout_rate)}},
        {{"dim", as_int(dim)}});
}

array causal_mask(std::size_t t) {
    return array::build<bool>({t, t}, [t](std::span<bool> m) {
        for (std::size_t i = 0; i < t; ++i)
            for (std::size_t j = 0; j < t; ++j)
                m[i * t + j] = j <= i;
    });
}

// ---- apply ---------------------------------------------------------------------------------

namespace {

/// A static field of a module, of type T; a malformed module is a leaf_error, not a crash.
template <class T>
const T& static_as(const tree& m, std::string_view name) {
    const auto& v = m.static_field(name).get();
    if (const T* p = std::get_if<T>(&v)) return *p;
    detail::throw_leaf("nn::apply", path{field_key{std::string(name)}},
                       "a static field of the module's type", m.static_field(name).to_string());
}
std::size_t size_field(const tree& m, std::string_view name) {
    return static_cast<std::size_t>(static_as<std::int64_t>(m, name));
}
double double_field(const tree& m, std::string_view name) {
    return static_as<double>(m, name);
}

[[noreturn]] void bad_input(const context& ctx, std::string_view module, std::string expected,
                            const array& x) {
    throw shape_error(fmt::format("nn::apply {}", module), keystr(ctx.where), std::move(expected),
                      x.describe());
}

/// Checks that the last axis of `x` is `n`.
void check_last(const context& ctx, std::string_view module, const array& x, std::size_t n,
                std::size_t min_rank = 1) {
    if (x.ndim() < min_rank || x.shape().back() != n)
        bad_input(ctx, module,
                  fmt::format("an input of rank >= {} whose last axis is {}", min_rank, n), x);
}

array apply_activation(const std::string& fn, const array& x) {
    if (fn == "relu") return relu(x);
    if (fn == "gelu") return gelu(x);
    if (fn == "gelu_tanh") return gelu(x, true);
    if (fn == "tanh") return paramtree::tanh(x);
    if (fn == "sigmoid") return sigmoid(x);
    return x;
}

/// A Linear module applied to `x`, followed by the activation `fn` ("identity": none). A
/// biased Linear followed by GELU is one fused operation (linear_gelu).
array apply_linear(const tree& m, const array& x, const context& ctx,
                   const std::string& fn = "identity") {
    check_last(ctx, "Linear", x, size_field(m, "in_features"));
    const tree b = m["bias"];
    const array& w = m["weight"].as_array();
    if (!b.is_none() && (fn == "gelu" || fn == "gelu_tanh"))
        return paramtree::linear_gelu(x, w, b.as_array(), fn == "gelu_tanh");
    return apply_activation(fn, b.is_none() ? paramtree::linear(x, w)
                                            : paramtree::linear(x, w, b.as_array()));
}

array apply_dropout(double rate, const array& x, const context& ctx) {
    if (!ctx.training || rate == 0) return x;
    return paramtree::dropout(ctx.module_key(), x, rate);
}

array apply_attention(const tree& m, const array& x, const context& ctx) {
    const std::size_t dim = size_field(m, "dim"), heads = size_field(m, "heads");
    check_last(ctx, "MultiHeadAttention", x, dim, 2);
    if (x.ndim() > 3)
        bad_input(ctx, "MultiHeadAttention",
                  fmt::format("[batch, time, {}] or [time, {}]", dim, dim), x);
    const bool batched = x.ndim() == 3;
    const std::size_t b = batched ? x.shape()[0] : 1, t = x.shape()[x.ndim() - 2];
    const double rate = double_field(m, "dropout");
    if (!ctx.training || rate == 0) {
        // The fused path: heads read in place, mask applied inside the softmax.
        const array q = apply_linear(m["q"], x, ctx.child("q"));
        const array k = apply_linear(m["k"], x, ctx.child("k"));
        const array v = apply_linear(m["v"], x, ctx.child("v"));
        const array y =
            scaled_dot_product_attention(q, k, v, heads, {.causal = static_as<bool>(m, "causal")});
        return apply_linear(m["o"], y, ctx.child("o"));
    }
    // Dropout on the attention weights needs them as an array: the composed path.
    const std::size_t dh = dim / heads;
    auto split_heads = [&](const array& z) { // [b, t, dim] -> [b, heads, t, dh]
        return transpose(z.reshape({b, t, heads, dh}), {0, 2, 1, 3});
    };
    const array q = split_heads(apply_linear(m["q"], x, ctx.child("q")));
    const array k = split_heads(apply_linear(m["k"], x, ctx.child("k")));
    const array v = split_heads(apply_linear(m["v"], x, ctx.child("v")));
    array scores = matmul(q, swapaxes(k, -1, -2)) * (1.0 / std::sqrt(static_cast<double>(dh)));
    if (static_as<bool>(m, "causal"))
        scores = where(causal_mask(t), scores, array::full({}, -1e9, x.dtype()));
    array weights = apply_dropout(rate, softmax(scores), ctx);
    const array merged = transpose(matmul(weights, v), {0, 2, 1, 3}).reshape(x.shape());
    return apply_linear(m["o"], merged, ctx.child("o"));
}

array apply_block(const tree& m, const array& x, const context& ctx) {
    check_last(ctx, "TransformerBlock", x, size_field(m, "dim"), 2);
    const tree drop = m["dropout"];
    const double rate = double_field(drop, "rate");
    const context dctx = ctx.child("dropout");
    auto sub = [&](const char* name, const array& h) { return apply(m[name], h, ctx.child(name)); };
    array h = x + apply_dropout(rate, sub("attn", sub("norm1", x)), dctx.child(0));
    return h + apply_dropout(rate, sub("mlp", sub("norm2", h)), dctx.child(1));
}

bool is_module(const tree& t, std::string_view name) {
    return t.kind() == node_kind::record && t.record_name() == name;
}
bool is_state_record(const tree& t) {
    return is_module(t, "pt.nn.State");
}

// Which state a State record is: the buffer of its running mean. The node itself is not enough:
// inside a gradient call a tied module arrives expanded and combined with its parameters, so
// its two uses are two nodes, but they hold the one stored array (expand puts the same handle
// at every tied position, and tracing keeps the buffer).
const void* state_key(const tree& state) {
    const tree mean = state.kind() == node_kind::record ? state["running_mean"] : tree();
    return mean.is_array() ? mean.as_array().storage_id() : state.identity();
}

array apply_batch_norm(const tree& m, const array& x, const context& ctx) {
    const std::size_t c = size_field(m, "channels");
    if (x.ndim() < 2 || x.shape()[1] != c)
        bad_input(ctx, "BatchNorm", fmt::format("an input [N, {}, ...]", c), x);
    const tree stored = m["state"];
    if (!is_state_record(stored))
        detail::throw_structure("nn::apply BatchNorm", ctx.where / field_key{"state"},
                                "a pt.nn.State record", describe(stored));
    // A tied module applied a second time in one call reads the state its first use wrote.
    tree state = stored;
    if (ctx.updates) {
        if (const auto it = ctx.updates->updated.find(state_key(stored));
            it != ctx.updates->updated.end())
            state = it->second;
    }
    const array mean = state["running_mean"].as_array();
    const array var = state["running_var"].as_array();
    const auto out = paramtree::batch_norm(x, m["weight"].as_array(), m["bias"].as_array(), mean,
                                           var, ctx.training, double_field(m, "eps"));
    if (ctx.training && ctx.updates) {
        const double momentum = double_field(m, "momentum");
        const array count = state["num_batches_tracked"].as_array();
        ctx.updates->updated[state_key(stored)] =
            batch_norm_state(stop_gradient(mean * (1 - momentum) + out.mean * momentum),
                             stop_gradient(var * (1 - momentum) + out.variance * momentum),
                             static_cast<std::int64_t>(count.item()) + 1);
    }
    return out.y;
}

array apply_mlp(const tree& m, const array& x, const context& ctx) {
    const tree layers = m["layers"];
    const auto& act = static_as<std::string>(m, "activation");
    array h = x;
    for (std::size_t i = 0; i < layers.size(); ++i)
        h = apply_linear(layers[i], h, ctx.child("layers").child(i),
                         i + 1 < layers.size() ? act : std::string("identity"));
    return h;
}

array apply_sequential(const tree& m, const array& x, const context& ctx) {
    const tree layers = m["layers"];
    array h = x;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        // A Linear followed by an Activation: one call, fused where it can be.
        if (i + 1 < layers.size() && is_module(layers[i], "pt.nn.Linear") &&
            is_module(layers[i + 1], "pt.nn.Activation")) {
            h = apply_linear(layers[i], h, ctx.child("layers").child(i),
                             static_as<std::string>(layers[i + 1], "fn"));
            ++i;
            continue;
        }
        h = apply(layers[i], h, ctx.child("layers").child(i));
    }
    return h;
}

array apply_module(const tree& m, const array& x, const context& ctx) {
    const std::string_view name = m.record_name();
    if (name == "pt.nn.Linear") return apply_linear(m, x, ctx);
    if (name == "pt.nn.Embedding") {
        if (x.dtype() != dtype::int32 && x.dtype() != dtype::int64)
            bad_input(ctx, "Embedding", "int32 or int64 indices", x);
        return take(m["weight"].as_array(), x);
    }
    if (name == "pt.nn.LayerNorm") {
        check_last(ctx, "LayerNorm", x, size_field(m, "dim"));
        return paramtree::layer_norm(x, m["weight"].as_array(), m["bias"].as_array(),
                                     double_field(m, "eps"));
    }
    if (name == "pt.nn.RMSNorm") {
        check_last(ctx, "RMSNorm", x, size_field(m, "dim"));
        return paramtree::rms_norm(x, m["weight"].as_array(), double_field(m, "eps"));
    }
    if (name == "pt.nn.Conv2d") {
        if (x.ndim() != 4 || x.shape()[1] != size_field(m, "in_channels"))
            bad_input(ctx, "Conv2d",
                      fmt::format("images [N, {}, H, W]", size_field(m, "in_channels")), x);
        const conv2d_options o{{size_field(m, "stride_h"), size_field(m, "stride_w")},
                               {size_field(m, "padding_h"), size_field(m, "padding_w")},
                               {size_field(m, "dilation_h"), size_field(m, "dilation_w")},
                               size_field(m, "groups")};
        const tree b = m["bias"];
        return b.is_array() ? paramtree::conv2d(x, m["weight"].as_array(), b.as_array(), o)
                            : paramtree::conv2d(x, m["weight"].as_array(), o);
    }
    if (name == "pt.nn.Conv1d") {
        if (x.ndim() != 3 || x.shape()[1] != size_field(m, "in_channels"))
            bad_input(ctx, "Conv1d",
                      fmt::format("sequences [N, {}, L]", size_field(m, "in_channels")), x);
        const conv1d_options o{size_field(m, "stride"), size_field(m, "padding"),
                               size_field(m, "dilation"), size_field(m, "groups")};
        const tree b = m["bias"];
        return b.is_array() ? paramtree::conv1d(x, m["weight"].as_array(), b.as_array(), o)
                            : paramtree::conv1d(x, m["weight"].as_array(), o);
    }
    if (name == "pt.nn.MaxPool2d" || name == "pt.nn.AvgPool2d") {
        const pool2d_options o{{size_field(m, "kernel_h"), size_field(m, "kernel_w")},
                               {size_field(m, "stride_h"), size_field(m, "stride_w")},
                               {size_field(m, "padding_h"), size_field(m, "padding_w")}};
        return name == "pt.nn.MaxPool2d" ? paramtree::max_pool2d(x, o)
                                         : paramtree::avg_pool2d(x, o);
    }
    if (name == "pt.nn.Flatten") {
        if (x.ndim() < 1) bad_input(ctx, "Flatten", "an input of rank >= 1", x);
        return reshape(x, {x.shape()[0], x.shape()[0] == 0 ? 0 : x.size() / x.shape()[0]});
    }
    if (name == "pt.nn.BatchNorm") return apply_batch_norm(m, x, ctx);
    if (name == "pt.nn.Dropout") return apply_dropout(double_field(m, "rate"), x, ctx);
    if (name == "pt.nn.Activation") return apply_activation(static_as<std::string>(m, "fn"), x);
    if (name == "pt.nn.MLP") return apply_mlp(m, x, ctx);
    if (name == "pt.nn.Sequential") return apply_sequential(m, x, ctx);
    if (name == "pt.nn.MultiHeadAttention") return apply_attention(m, x, ctx);
    if (name == "pt.nn.TransformerBlock") return apply_block(m, x, ctx);
    // Dispatch is on the reserved `pt.nn.` record names, which `pt::record` refuses: a user
    // record called "Linear" (Flax and Inox store Linear weights as [in, out]) is never
    // silently applied as x·Wᵀ + b.
    detail::throw_structure(
        "nn::apply", ctx.where,
        "a module built by pt::nn (record names pt.nn.Linear, pt.nn.Embedding, ...)",
        fmt::format("{}: a record of your own; apply it with your own function", describe(m)));
}

/// An error raised below a module without a path of its own gets the module's path.
template <class E>
[[noreturn]] void relabel(const E& e, const context& ctx, std::string_view module) {
    // A module's own check already says "nn::apply <module>": prefix only what came from
    // below (an operation's error), so messages never repeat the prefix.
    throw E(e.context().starts_with("nn::apply ")
                ? e.context()
                : fmt::format("nn::apply {}: {}", module, e.context()),
            keystr(ctx.where), e.expected(), e.found());
}

} // namespace

stateful_output apply_with_state(const tree& module, const array& x, const context& ctx) {
    detail::state_updates updates;
    context with = ctx;
    with.updates = &updates;
    array y = apply(module, x, with);
    if (updates.updated.empty()) return {std::move(y), module};
    // The State records are replaced where they are stored: in the pruned tree a tied module's
    // state is one record, so it stays one.
    tree updated = tree_map(
        {.is_leaf = is_state_record},
        [&](const tree& leaf) {
            const auto it = updates.updated.find(state_key(leaf));
            return it == updates.updated.end() ? leaf : it->second;
        },
        module);
    return {std::move(y), std::move(updated)};
}

params_and_state partition_state(const tree& model) {
    // Where the State records are (they are leaves of this flattening), then which leaves of
    // the model lie under one of them.
    // Every position counts, tied ones included (partition asks about each member of a tie).
    const auto [records, record_def] = flatten_with_path(expand(model), is_state_record);
    std::vector<path> state_paths;
    for (std::size_t i = 0; i < records.size(); ++i)
        if (is_state_record(records[i].second)) state_paths.push_back(records[i].first);
    auto [params, state] = partition(
        model,
        [&](const path& p, const tree&) {
            return std::none_of(state_paths.begin(), state_paths.end(), [&](const path& s) {
                return p.size() >= s.size() && std::equal(s.begin(), s.end(), p.begin());
            });
        },
        tie_policy::any);
    return {std::move(params), std::move(state)};
}

tree update_state(const tree& target, const tree& updated) {
    auto [leaves, def] = flatten_with_path(target, is_state_record);
    const tree source = expand(updated); // tied positions readable by path
    std::vector<tree> replaced;
    replaced.reserve(leaves.size());
    for (auto& [p, leaf] : leaves) {
        if (!is_state_record(leaf)) {
            replaced.push_back(std::move(leaf));
            continue;
        }
        tree now = source.contains(p) ? source.at(p) : tree{};
        if (!is_state_record(now))
            detail::throw_structure("nn::update_state", p, "a pt.nn.State record in `updated`",
                                    source.contains(p) ? describe(now) : "nothing there");
        replaced.push_back(std::move(now));
    }
    return unflatten(def, std::move(replaced));
}

array apply(const tree& module, const array& x, const context& ctx) {
    // A model with ties is applied as what it stands for.
    if (module.kind() == node_kind::shared) return apply(expand(module), x, ctx);
    if (module.kind() != node_kind::record)
        detail::throw_structure("nn::apply", ctx.where, "a module record", describe(module));
    try {
        return apply_module(module, x, ctx);
    } catch (const shape_error& e) {
        if (!e.path().empty()) throw;
        relabel(e, ctx, module.record_name());
    } catch (const leaf_error& e) {
        if (!e.path().empty()) throw;
        relabel(e, ctx, module.record_name());
    } catch (const path_error& e) {
        if (!e.path().empty()) throw;
        relabel(e, ctx, module.record_name());
    }
}

} // namespace paramtree::nn
