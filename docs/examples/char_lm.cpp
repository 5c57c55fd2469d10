// paramtree — the flagship demo: a character-level GPT whose output projection IS its input
// embedding (a Shared tie), trained with Adam on a text every Debian machine has.
//
//     scripts/demo                         # train on /usr/share/common-licenses/GPL-3
//     scripts/demo --steps 300 --untied    # the same model without the tie, for comparison
//     scripts/demo --help
//
// Everything is a pure function of trees: the model is a tree, its gradient is a tree of the
// same (pruned) structure, the Adam state is a tree, and a step returns new trees.
#include "gpt.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace pt = paramtree;
namespace rnd = paramtree::random;

struct options {
    std::size_t steps = 1200;
    std::string text = "/usr/share/common-licenses/GPL-3";
    std::uint64_t seed = 0;
    bool untied = false;
    std::size_t batch = 16;
    std::size_t context = 64;
    std::size_t dim = 128;
    std::size_t layers = 2;
    std::size_t heads = 4;
    double lr = 3e-3;
    std::size_t sample = 300;
    bool check = false; // exit non-zero unless the loss fell and the tie held (tests)
    std::string save;   // checkpoint file written at the end
    std::string resume; // checkpoint file to continue from
};

const char* const usage = R"(usage: char_lm [options]
Trains a character-level GPT whose output projection is tied to its input embedding.

  --steps N      training steps (default 1200: about 25 s on 2 cores of a recent
                 Xeon, a few minutes on older or slower machines)
  --text PATH    text to learn (default /usr/share/common-licenses/GPL-3)
  --seed N       random seed (default 0)
  --untied       give the output projection its own weight (for comparison)
  --batch N      sequences per step (default 16)
  --context N    characters per sequence (default 64)
  --dim N        model width (default 128)
  --layers N     Transformer blocks (default 2)
  --heads N      attention heads (default 4)
  --lr X         peak Adam learning rate (default 0.003)
  --sample N     characters to sample after training (default 300)
  --save PATH    save model, optimizer state and step to PATH (safetensors) at the end
  --resume PATH  continue from a checkpoint written by --save (same model options)
  --check        exit 1 unless the loss fell and the tie held
  --help         this text
)";

double parse_number(std::string_view flag, std::string_view v) {
    double out = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || p != v.data() + v.size() || !(out > 0))
        throw std::invalid_argument(std::string(flag) + " expects a positive number, got '" +
                                    std::string(v) + "'");
    return out;
}

std::size_t parse_size(std::string_view flag, std::string_view v) {
    std::size_t out = 0;
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || p != v.data() + v.size())
        throw std::invalid_argument(std::string(flag) + " expects a whole number, got '" +
                                    std::string(v) + "'");
    return out;
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(a) + " expects a value");
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::cout << usage;
            std::exit(0);
        } else if (a == "--steps")
            o.steps = parse_size(a, value());
        else if (a == "--text")
            o.text = value();
        else if (a == "--seed")
            o.seed = parse_size(a, value());
        else if (a == "--untied")
            o.untied = true;
        else if (a == "--batch")
            o.batch = parse_size(a, value());
        else if (a == "--context")
            o.context = parse_size(a, value());
        else if (a == "--dim")
            o.dim = parse_size(a, value());
        else if (a == "--layers")
            o.layers = parse_size(a, value());
        else if (a == "--heads")
            o.heads = parse_size(a, value());
        else if (a == "--lr")
            o.lr = parse_number(a, value());
        else if (a == "--sample")
            o.sample = parse_size(a, value());
        else if (a == "--check")
            o.check = true;
        else if (a == "--save")
            o.save = value();
        else if (a == "--resume")
            o.resume = value();
        else
            throw std::invalid_argument("unknown option '" + std::string(a) + "' (see --help)");
    }
    if (o.batch == 0 || o.context < 2 || o.dim == 0 || o.heads == 0 || o.dim % o.heads != 0)
        throw std::invalid_argument("need --batch >= 1, --context >= 2 and --heads dividing --dim");
    // Paths are checked now, not after minutes of training.
    namespace fs = std::filesystem;
    if (!fs::is_regular_file(o.text))
        throw std::invalid_argument("--text '" + o.text + "' is not a readable file");
    if (!o.resume.empty() && !fs::is_regular_file(o.resume))
        throw std::invalid_argument("--resume '" + o.resume + "' is not a file");
    if (!o.save.empty()) {
        const fs::path dir =
            fs::path(o.save).has_parent_path() ? fs::path(o.save).parent_path() : fs::path(".");
        if (!fs::is_directory(dir))
            throw std::invalid_argument("--save '" + o.save + "': no directory '" + dir.string() +
                                        "'");
    }
    return o;
}

/// The text as token ids over its own alphabet (the distinct bytes, sorted).
struct corpus {
    std::string alphabet;
    std::vector<std::int64_t> ids;

    explicit corpus(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read the text file '" + path + "'");
        std::ostringstream buf;
        buf << in.rdbuf();
        const std::string text = buf.str();
        bool seen[256] = {};
        for (const unsigned char c : text)
            seen[c] = true;
        for (int c = 0; c < 256; ++c)
            if (seen[c]) alphabet.push_back(static_cast<char>(c));
        std::int64_t index[256] = {};
        for (std::size_t i = 0; i < alphabet.size(); ++i)
            index[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int64_t>(i);
        ids.reserve(text.size());
        for (const unsigned char c : text)
            ids.push_back(index[c]);
    }

    /// `batch` random windows of `t + 1` characters: inputs and next-character targets.
    [[nodiscard]] std::pair<pt::array, pt::array> batch(const rnd::key& key, std::size_t b,
                                                        std::size_t t) const {
        const auto starts = rnd::bits(key, b);
        std::vector<std::int64_t> x(b * t), y(b * t);
        for (std::size_t i = 0; i < b; ++i) {
            const std::size_t s = starts[i] % (ids.size() - t - 1);
            for (std::size_t j = 0; j < t; ++j) {
                x[i * t + j] = ids[s + j];
                y[i * t + j] = ids[s + j + 1];
            }
        }
        return {pt::array::from_vector<std::int64_t>({b, t}, std::move(x)),
                pt::array::from_vector<std::int64_t>({b, t}, std::move(y))};
    }
};

std::string human(double seconds) {
    char buf[32];
    if (seconds < 60)
        std::snprintf(buf, sizeof buf, "%.0fs", seconds);
    else
        std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(seconds) / 60,
                      static_cast<int>(seconds) % 60);
    return buf;
}

/// Samples `n` characters after `prompt` (temperature 0.8), feeding back the last `context`.
std::string sample(const pt::tree& model, const corpus& text, std::size_t context,
                   const std::string& prompt, std::size_t n, const rnd::key& key) {
    std::vector<std::int64_t> ids;
    for (const char c : prompt) {
        const auto at = text.alphabet.find(c);
        if (at != std::string::npos) ids.push_back(static_cast<std::int64_t>(at));
    }
    if (ids.empty()) ids.push_back(0);
    const pt::tree m = pt::expand(model);
    std::string out = prompt;
    for (std::size_t step = 0; step < n; ++step) {
        const std::size_t t = std::min(context, ids.size());
        std::vector<std::int64_t> window(ids.end() - static_cast<std::ptrdiff_t>(t), ids.end());
        const pt::array x = pt::array::from_vector<std::int64_t>({1, t}, std::move(window));
        const std::vector<double> logits = gpt::logits(m, x).to_doubles();
        // Softmax at temperature 0.8 over the last position's logits, then one draw.
        const std::size_t v = text.alphabet.size(), last = (t - 1) * v;
        const double top =
            *std::max_element(logits.begin() + static_cast<std::ptrdiff_t>(last), logits.end());
        std::vector<double> p(v);
        double total = 0;
        for (std::size_t c = 0; c < v; ++c)
            total += p[c] = std::exp((logits[last + c] - top) / 0.8);
        const double u = total * rnd::uniform(rnd::fold_in(key, static_cast<std::uint32_t>(step)),
                                              {}, 0, 1, pt::dtype::float64)
                                     .item();
        double acc = 0;
        std::size_t pick = v - 1;
        for (std::size_t c = 0; c < v; ++c)
            if (u < (acc += p[c])) {
                pick = c;
                break;
            }
        ids.push_back(static_cast<std::int64_t>(pick));
        out.push_back(text.alphabet[pick]);
    }
    return out;
}

int run(const options& o) {
    const corpus text(o.text);
    if (text.ids.size() < o.context + 2)
        throw std::runtime_error("the text is shorter than one training window");
    const gpt::config cfg{text.alphabet.size(), o.context, o.dim, o.layers, o.heads, !o.untied};
    const rnd::key root = rnd::make_key(o.seed);
    pt::tree model = gpt::make(rnd::fold_in(root, 0), cfg);

    // What multiplies the matrices on this machine, and a one-line warning when the BLAS
    // silently runs generic kernels on a CPU that supports more.
    const pt::compute_backend& backend = pt::backend_info();
    std::cout << pt::to_string(backend) << "\n";
    if (!backend.warning.empty()) std::cerr << backend.warning << "\n";
    std::cout << "paramtree char-level GPT on " << o.text << " (" << text.ids.size()
              << " characters, " << text.alphabet.size() << " distinct)\n\n"
              << pt::pformat(model) << "\n\n";
    const auto count = pt::count_parameters(model);
    std::cout << "parameters: " << count.elements << " trained" << (o.untied ? " (untied)" : "")
              << "; " << count.expanded_elements << " if every use held its own copy";
    if (!o.untied)
        std::cout << " (the tie saves " << count.expanded_elements - count.elements << ")";
    std::cout << "\n\n";

    // AdamW (no decay on biases, norms and positions), warm-up then cosine decay, clipping.
    namespace opt = pt::optim;
    const auto decay = [](const pt::path& p, const pt::tree&) {
        const std::string k = pt::keystr(p);
        return k.ends_with(".weight") && k.find("norm") == std::string::npos &&
               !k.starts_with(".pos");
    };
    const auto lr = opt::warmup_cosine_decay_schedule(
        0.0, o.lr, static_cast<std::int64_t>(std::min<std::size_t>(50, o.steps / 10)),
        static_cast<std::int64_t>(std::max<std::size_t>(o.steps, 1)), o.lr * 0.1);
    const opt::transformation optimizer =
        opt::chain({opt::clip_by_global_norm(1.0, opt::nonfinite_policy::error),
                    opt::adamw(lr, 0.9, 0.99, 1e-8, 0.01, decay)});
    pt::tree state = optimizer.init(model);
    std::size_t first_step = 0;

    // A checkpoint is one tree: the model (its tie stored once), the optimizer state (one
    // Adam moment per tied weight) and the step.
    auto checkpoint = [](const pt::tree& m, const pt::tree& s, std::size_t step) {
        return pt::record("Checkpoint",
                          {{"model", m},
                           {"optimizer", s},
                           {"step", pt::array::scalar(static_cast<std::int64_t>(step))}});
    };
    if (!o.resume.empty()) {
        const pt::tree loaded = pt::load(o.resume, checkpoint(model, state, 0));
        model = loaded["model"];
        state = loaded["optimizer"];
        first_step = static_cast<std::size_t>(loaded["step"].as_array().item());
        std::cout << "resumed from " << o.resume << " at step " << first_step << "\n";
    }

    // A fixed held-out batch measures the loss before and after.
    const auto [eval_x, eval_y] = text.batch(rnd::fold_in(root, 1), 32, o.context);
    const double initial = gpt::loss(model, eval_x, eval_y).item();
    std::cout << "loss before training: " << initial
              << " (uniform guessing: " << std::log(static_cast<double>(text.alphabet.size()))
              << ")\n";

    const bool tty = isatty(STDOUT_FILENO) != 0;
    const auto step_fn = pt::value_and_grad(
        [](const pt::tree& m, const pt::array& x, const pt::array& y, const rnd::key& k) {
            return gpt::loss(m, x, y, pt::nn::context::train(k));
        });
    const auto start = std::chrono::steady_clock::now();
    double smoothed = initial;
    for (std::size_t step = 0; step < o.steps; ++step) {
        const rnd::key k = rnd::fold_in(root, static_cast<std::uint32_t>(first_step + step + 2));
        const auto [x, y] = text.batch(k, o.batch, o.context);
        auto [loss, grads] = step_fn(model, x, y, rnd::fold_in(k, 1));
        // A diverged run stops with the step that diverged, before its update reaches the
        // parameters (the optimizer's clipping raises on non-finite gradients as well).
        if (!std::isfinite(loss.item())) {
            if (tty) std::cout << "\n";
            std::cerr << "char_lm: stopped at step " << first_step + step + 1 << ": the loss is "
                      << loss.item() << " (diverged; try a smaller --lr). The parameters of step "
                      << first_step + step << " are kept.\n";
            return 2;
        }
        pt::optim::update_result result;
        try {
            result = optimizer.update(grads, state, model);
        } catch (const pt::value_error& e) {
            if (tty) std::cout << "\n";
            std::cerr << "char_lm: stopped at step " << first_step + step + 1
                      << ": a gradient is not finite (" << e.what() << ")\n";
            return 2;
        }
        model = opt::apply_updates(model, result.updates);
        state = std::move(result.state);

        smoothed = step == 0 ? loss.item() : 0.95 * smoothed + 0.05 * loss.item();
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double tokens_per_s = static_cast<double>((step + 1) * o.batch * o.context) / elapsed;
        const double eta =
            elapsed / static_cast<double>(step + 1) * static_cast<double>(o.steps - step - 1);
        char line[160];
        std::snprintf(line, sizeof line,
                      "step %zu/%zu  loss %.3f  %.0f tokens/s  elapsed %s  ETA %s",
                      first_step + step + 1, first_step + o.steps, smoothed, tokens_per_s,
                      human(elapsed).c_str(), human(eta).c_str());
        if (tty) {
            std::cout << "\r" << line << "\033[K" << std::flush; // one updating line
        } else if ((step + 1) % std::max<std::size_t>(1, o.steps / 10) == 0 ||
                   step + 1 == o.steps) {
            std::cout << line << std::endl; // flushed: piped runs show progress as it happens
        }
    }
    if (tty) std::cout << "\n";

    const double final_loss = gpt::loss(model, eval_x, eval_y).item();
    std::cout << "\nloss after training:  " << final_loss << " (was " << initial << ")\n";

    // The tie held: one embedding buffer serves both places, and there is still one leaf.
    bool tie_held = true;
    if (!o.untied) {
        const pt::tree full = pt::expand(model);
        tie_held = pt::same_storage(full["embed"]["weight"].as_array(),
                                    full["head"]["weight"].as_array()) &&
                   pt::count_parameters(model).elements == count.elements;
        std::cout << "tie held: " << (tie_held ? "yes" : "NO")
                  << " (head.weight is embed.weight, one buffer, one Adam moment)\n";
    }
    if (!o.save.empty()) {
        pt::save(o.save, checkpoint(model, state, first_step + o.steps));
        std::cout << "saved " << o.save << " (" << std::filesystem::file_size(o.save)
                  << " bytes; the tied weight is stored once)\n";
    }
    if (o.sample > 0)
        std::cout << "\nsample:\n"
                  << sample(model, text, o.context, "The ", o.sample, rnd::fold_in(root, 3))
                  << "\n";
    if (o.check && !(final_loss < initial && tie_held)) {
        std::cerr << "check failed: loss " << initial << " -> " << final_loss << ", tie "
                  << (tie_held ? "held" : "broken") << "\n";
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        std::cerr << "char_lm: " << e.what() << "\n";
        return 2;
    }
}
