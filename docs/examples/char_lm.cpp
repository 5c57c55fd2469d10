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

#include <paramtree/ranges.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#ifdef PARAMTREE_HAVE_MPI
#include <paramtree/distributed.hpp>
#endif

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
    // The whole run's length: the learning-rate schedule spans it. On the GPL-3 text (about 35k
    // characters) 700 steps end at the best held-out loss; 1200 learned the text by heart
    // (held-out 2.04 at step 960, 2.09 at the end; seeds 0-2 end at 2.01-2.05 with 700).
    std::size_t steps = 700;
    std::size_t stop_at = 0; // stop after this global step (0: at --steps)
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
    bool print_model = false;
    bool remat = false; // rematerialise each block (same results, less activation memory)
    // float32, or bfloat16 products with float32 accumulation, weights and optimizer state
    pt::matmul_precision precision = pt::matmul_precision::float32;
    std::string save;               // checkpoint file written at the end
    std::string save_best;          // checkpoint written at each new best held-out loss
    std::size_t patience = 0;       // stop after this many evaluations without a new best
    std::string freeze;             // a path pattern: those parameters are not trained
    std::string resume;             // checkpoint file to continue from
    std::string log;                // CSV: step, train loss, eval loss, tokens/s, learning rate
    std::string plot;               // loss curve picture (.svg or .png) drawn by gnuplot
    std::vector<std::string> given; // the run options named on the command line
};

/// Calls `f(name, member)` for each option that defines a run: the one list that says what a
/// checkpoint records, what --resume restores and which command-line options may conflict.
template <class Options, class F>
void for_each_run_option(Options& o, F&& f) {
    f("steps", o.steps);
    f("text", o.text);
    f("seed", o.seed);
    f("untied", o.untied);
    f("batch", o.batch);
    f("context", o.context);
    f("dim", o.dim);
    f("layers", o.layers);
    f("heads", o.heads);
    f("lr", o.lr);
    f("freeze", o.freeze);
}

namespace fs = std::filesystem;

// A file the run will write: its directory must exist now, not after minutes of training.
std::string writable(const std::string& file) {
    const fs::path dir = fs::path(file).has_parent_path() ? fs::path(file).parent_path() : ".";
    if (!fs::is_directory(dir)) return "no directory '" + dir.string() + "' for '" + file + "'";
    return {};
}

// "--lr abc" must say what --lr wants, not print the range of a double.
const CLI::Validator positive_number(
    [](const std::string& v) -> std::string {
        double x = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (ec != std::errc{} || p != v.data() + v.size() || !(x > 0) || !std::isfinite(x))
            return "expects a positive number, got '" + v + "'";
        return {};
    },
    "");
const CLI::Validator whole_number(
    [](const std::string& v) -> std::string {
        std::size_t x = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (ec != std::errc{} || p != v.data() + v.size())
            return "expects a whole number, got '" + v + "'";
        return {};
    },
    "");
const CLI::Validator existing_file = CLI::Validator(CLI::ExistingFile).description("");
const CLI::Validator at_least_one(
    [](const std::string& v) -> std::string {
        return v.find_first_not_of('0') == std::string::npos ? "must be at least 1" : "";
    },
    "");

/// Parses the command line with CLI11; `--help` prints the usage and exits 0, a bad option
/// exits 2 with a message naming it.
options parse(int argc, char** argv) {
    options o;
    CLI::App app{"Trains a character-level GPT whose output projection is tied to its input\n"
                 "embedding (one weight, trained once), on a text every Debian machine has.",
                 "char_lm"};
    app.get_formatter()->column_width(22);
    app.footer("The default run (700 steps) takes about 15 s on 2 cores of a recent Xeon and a\n"
               "few minutes on older machines. --resume continues a saved run to its --steps\n"
               "with the same options, schedule and data: --steps 100 --stop-at 50 --save F,\n"
               "then --resume F, ends where --steps 100 ends, bit for bit.\n");
    const auto count = [&](const char* name, std::size_t& v, const char* help) {
        return app.add_option(name, v, help)->type_name("N")->check(whole_number);
    };
    count("--steps", o.steps, "training steps of the whole run (default 700)")->check(at_least_one);
    count("--stop-at", o.stop_at, "stop after this step (a run in parts)")->check(at_least_one);
    app.add_option("--text", o.text, "text to learn (default: the GPL-3 text)")
        ->type_name("PATH")
        ->check(existing_file);
    app.add_option("--seed", o.seed, "random seed (default 0)")
        ->type_name("N")
        ->check(whole_number);
    app.add_flag("--untied", o.untied, "give the output projection its own weight");
    count("--batch", o.batch, "sequences per step (default 16)")->check(at_least_one);
    count("--context", o.context, "characters per sequence (default 64)")
        ->check(CLI::Range(std::size_t{2}, std::size_t{1} << 20).description(""));
    count("--dim", o.dim, "model width (default 128)")->check(at_least_one);
    count("--layers", o.layers, "Transformer blocks (default 2)");
    count("--heads", o.heads, "attention heads, dividing --dim (default 4)")->check(at_least_one);
    app.add_option("--lr", o.lr, "peak AdamW learning rate (default 0.003)")
        ->type_name("X")
        ->check(positive_number);
    count("--sample", o.sample, "characters sampled after training (default 300)");
    app.add_option("--save", o.save, "save model, optimizer, step and options")->type_name("PATH");
    app.add_option("--save-best", o.save_best,
                   "save the run as --save does at each new best held-out loss")
        ->type_name("PATH");
    app.add_option("--freeze", o.freeze,
                   "train all but the parameters this path pattern matches (e.g. 'blocks.**', "
                   "'**.bias'): no update and no optimizer state for them")
        ->type_name("PATTERN")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                try {
                    (void)pt::pattern(v);
                    return {};
                } catch (const pt::error& e) {
                    return e.what();
                }
            },
            ""));
    count("--patience", o.patience,
          "stop early after N evaluations without a better held-out loss (default: off)");
    app.add_option("--resume", o.resume, "continue a run saved by --save")
        ->type_name("PATH")
        ->check(existing_file);
    app.add_option("--log", o.log, "write step, losses, tokens/s, lr as CSV")->type_name("PATH");
    app.add_option("--plot", o.plot, "draw the loss curves (gnuplot)")->type_name("PATH.svg|png");
    app.add_flag("--print-model", o.print_model, "print the whole model, not a summary");
    app.add_flag("--remat", o.remat,
                 "recompute each block's activations in the backward pass (less memory)");
    // Read as text and checked against the names: CLI11's CheckedTransformer prints a map of
    // enum values as garbage in --help and in its error ("Check fp8 value in {bf16->,...").
    std::string precision = "float32";
    app.add_option("--precision", precision,
                   "matrix products in float32 (default) or bfloat16 (float32 accumulation, "
                   "weights and optimizer state; AMX/AVX512-BF16)")
        ->type_name("float32|bfloat16")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                for (auto& c : v)
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                if (v == "float32" || v == "f32" || v == "bfloat16" || v == "bf16") return {};
                return "expects float32 (f32) or bfloat16 (bf16), got '" + v + "'";
            },
            ""));
    app.add_flag("--check", o.check, "exit 1 unless the loss fell and the tie held");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        std::exit(app.exit(e) == 0 ? 0 : 2);
    }
    o.precision =
        precision.starts_with("b") ? pt::matmul_precision::bfloat16 : pt::matmul_precision::float32;
    for_each_run_option(o, [&](const char* name, const auto&) {
        if (app.count(std::string("--") + name) > 0) o.given.emplace_back(name);
    });
    std::string problem;
    if (o.dim % o.heads != 0) problem = "--heads must divide --dim";
    for (const auto* file : {&o.save, &o.save_best, &o.log, &o.plot})
        if (problem.empty() && !file->empty()) problem = writable(*file);
    if (problem.empty() && !o.plot.empty() && !o.plot.ends_with(".svg") &&
        !o.plot.ends_with(".png"))
        problem = "--plot '" + o.plot + "': the picture must be a .svg or a .png file";
    if (!problem.empty()) {
        std::cerr << "char_lm: " << problem << "\nRun with --help for more information.\n";
        std::exit(2);
    }
    return o;
}

/// The text as token ids over its own alphabet (the distinct bytes, sorted). The last tenth
/// is held out: training windows come from the rest, the evaluation windows from it.
struct corpus {
    std::string alphabet;
    std::vector<std::int64_t> ids;
    std::size_t split = 0; // ids[0, split) are trained on, ids[split, end) held out

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
        split = ids.size() - ids.size() / 10;
    }

    /// Rows [first, last) of `b` random windows of `t + 1` characters from the trained part (or
    /// the held-out one), as inputs and next-character targets: what one of several
    /// data-parallel processes trains on (all of them: first 0, last b).
    [[nodiscard]] std::pair<pt::array, pt::array> rows(const rnd::key& key, std::size_t b,
                                                       std::size_t t, std::size_t first,
                                                       std::size_t last,
                                                       bool held_out = false) const {
        const std::size_t from = held_out ? split : 0;
        const std::size_t length = (held_out ? ids.size() : split) - from;
        const auto starts = rnd::bits(key, b);
        const std::size_t n = last - first;
        std::vector<std::int64_t> x(n * t), y(n * t);
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t s = from + starts[first + i] % (length - t - 1);
            for (std::size_t j = 0; j < t; ++j) {
                x[i * t + j] = ids[s + j];
                y[i * t + j] = ids[s + j + 1];
            }
        }
        return {pt::array::from_vector<std::int64_t>({n, t}, std::move(x)),
                pt::array::from_vector<std::int64_t>({n, t}, std::move(y))};
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

/// The processes this run trains on: one, or several under `mpirun` (data parallel: each
/// takes a slice of every global batch, gradients are averaged over all of them, and every
/// process applies the same update). Only process 0 prints and writes files.
struct parallel {
    int rank = 0, size = 1;
    double reduce_seconds = 0;    // time in the gradient all-reduce
    std::size_t reduce_bytes = 0; // gradient bytes per step
#ifdef PARAMTREE_HAVE_MPI
    std::optional<pt::distributed::communicator> comm;
#endif

    [[nodiscard]] std::pair<std::size_t, std::size_t> slice(std::size_t global) const {
#ifdef PARAMTREE_HAVE_MPI
        if (comm) return pt::distributed::batch_slice(global, *comm);
#endif
        return {0, global};
    }
    [[nodiscard]] pt::tree start(const pt::tree& model) const {
#ifdef PARAMTREE_HAVE_MPI
        if (comm) return pt::distributed::broadcast(*comm, model);
#endif
        return model;
    }
    /// The mean of `grads` (and the loss) over all processes, weighted by their rows; the time
    /// it takes is the step's communication.
    [[nodiscard]] pt::tree mean(const pt::tree& t, std::size_t rows) {
        const auto t0 = std::chrono::steady_clock::now();
        pt::tree out = average(t, rows, &reduce_bytes);
        reduce_seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return out;
    }
    /// The mean of `t` over all processes, weighted by their rows; `bytes`, if given, receives
    /// what this process sent.
    [[nodiscard]] pt::tree average(const pt::tree& t, std::size_t rows,
                                   std::size_t* bytes = nullptr) const {
#ifdef PARAMTREE_HAVE_MPI
        if (comm) {
            pt::distributed::allreduce_stats stats;
            // 256 KiB buckets, not DDP's 25 MiB: this model's whole gradient is 1.6 MiB, and
            // several buckets in flight cut the all-reduce time by a fifth (docs/benchmarks.md).
            pt::tree out = pt::distributed::allreduce_mean(
                *comm, t, {.bucket_bytes = 256 << 10, .weight = static_cast<double>(rows)}, &stats);
            if (bytes != nullptr) *bytes = stats.bytes;
            return out;
        }
#endif
        (void)rows;
        if (bytes != nullptr) *bytes = 0;
        return t;
    }
    /// True when `t` is bitwise the same on every process.
    [[nodiscard]] bool identical(const pt::tree& t) const {
#ifdef PARAMTREE_HAVE_MPI
        if (comm) return pt::distributed::identical_on_all(*comm, t);
#endif
        (void)t;
        return true;
    }
};

/// The options that define a run, saved in its checkpoints so `--resume` goes on with the
/// same model, data and schedule.
pt::tree run_record(const options& o) {
    std::vector<std::pair<std::string, pt::tree>> fields;
    for_each_run_option(o, [&]<class T>(const char* name, const T& value) {
        if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>)
            fields.emplace_back(name, pt::tree(static_cast<std::int64_t>(value)));
        else
            fields.emplace_back(name, pt::tree(value));
    });
    return pt::record("Run", std::move(fields));
}

/// A checkpoint is one tree: the model (its tie stored once), the optimizer state (one Adam
/// moment per tied weight), the global step and the run's options.
pt::tree checkpoint(const pt::tree& model, const pt::tree& state, std::size_t step,
                    const options& o) {
    return pt::record("Checkpoint", {{"model", model},
                                     {"optimizer", state},
                                     {"step", pt::array::scalar(static_cast<std::int64_t>(step))},
                                     {"run", run_record(o)}});
}

/// Takes the saved run's options; one named on the command line must agree (`--steps` may
/// differ: a longer run stretches the schedule from here on).
void adopt_saved_run(options& o, const std::string& file) {
    // Mapped, not copied: only the options (in the header) are read here; run() loads the
    // arrays against the model it builds.
    const pt::tree saved = pt::load_tree(file, {.memory = pt::load_memory::map});
    if (!saved.contains(pt::parse_path(".run")))
        throw std::runtime_error("'" + file + "' has no run options (written by an older " +
                                 "char_lm); it cannot be resumed");
    const pt::tree run = saved["run"];
    const auto given = [&](const char* name) {
        return std::find(o.given.begin(), o.given.end(), name) != o.given.end();
    };
    for_each_run_option(o, [&]<class T>(const char* name, T& field) {
        // An option newer than the checkpoint keeps its default (or what was given).
        if (!run.contains(pt::path{pt::field_key{name}})) return;
        T value{};
        if constexpr (std::is_unsigned_v<T> && !std::is_same_v<T, bool>)
            value = static_cast<T>(run[name].template as<std::int64_t>());
        else
            value = run[name].template as<T>();
        const bool steps = std::string_view(name) == "steps";
        if (given(name) && value != field && !steps)
            throw std::runtime_error(fmt::format("--{} {} differs from the resumed run's {} ('{}')",
                                                 name, field, value, file));
        // A different --steps is allowed, and said: it changes the schedule, not only the end.
        if (given(name) && value != field && steps)
            std::cout << fmt::format("--steps {} instead of the saved run's {}: the learning-rate "
                                     "schedule (warm-up and cosine decay) is planned over {} "
                                     "steps from here on\n",
                                     field, value, field);
        if (!given(name)) field = value;
    });
}

/// The held-out losses seen so far: the best and its step (what --save-best keeps and the
/// report names), evaluations since it (what --patience waits for) and evaluations in a row
/// that were worse than the one before (what the overfitting warning reads).
struct held_out_record {
    double best;
    std::size_t best_step;
    double previous;
    std::size_t since_best = 0, rises = 0;

    /// Records the evaluation at `step`; true when it is a new best.
    bool add(double eval, std::size_t step) {
        rises = eval > previous ? rises + 1 : 0;
        previous = eval;
        if (!(eval < best)) {
            ++since_best;
            return false;
        }
        best = eval;
        best_step = step;
        since_best = 0;
        return true;
    }
};

/// One row per step of the log and the plot; eval is NaN between evaluations.
struct history_row {
    std::size_t step;
    double train, eval, tokens_per_s, lr;
};

void write_log_row(std::ofstream& log, const history_row& r) {
    // Empty where there is no value (eval between evaluations, training columns at the start).
    const auto cell = [](double v, const char* format) {
        return std::isnan(v) ? std::string() : fmt::format(fmt::runtime(format), v);
    };
    log << r.step << ',' << cell(r.train, "{:.6g}") << ',' << cell(r.eval, "{:.6g}") << ','
        << cell(r.tokens_per_s, "{:.0f}") << ',' << cell(r.lr, "{:.6g}") << '\n'
        << std::flush; // a crash or a kill leaves every finished step in the file
}

/// Draws the train (raw and smoothed) and eval loss curves with gnuplot, the program, fed a
/// script on its standard input. Returns what happened, for the user.
std::string plot(const std::vector<history_row>& history, const std::string& file,
                 const std::string& title) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
        return "gnuplot not found: skipped the plot (apt-get install gnuplot-nox)";
    const bool png = file.ends_with(".png");
    FILE* gp = popen("gnuplot", "w");
    if (gp == nullptr) return "could not start gnuplot: skipped the plot";
    std::string script = fmt::format("set terminal {} size 900,540 font ',11'\nset output '{}'\n",
                                     png ? "pngcairo" : "svg dynamic", file);
    script += fmt::format("set title '{}' noenhanced\nset xlabel 'step'\nset ylabel 'loss "
                          "(cross-entropy, nats per character)'\nset grid\nset key top right\n",
                          title);
    script += "set datafile missing 'nan'\n$d << EOD\n";
    // An exponential moving average with Adam's bias correction: no lag from a zero start.
    double average = 0, weight = 0;
    for (const auto& r : history) {
        if (!std::isnan(r.train)) {
            average = 0.95 * average + 0.05 * r.train;
            weight = 0.95 * weight + 0.05;
        }
        script += fmt::format("{} {} {} {}\n", r.step, r.train,
                              weight > 0 ? average / weight : std::nan(""), r.eval);
    }
    script += "EOD\nplot $d using 1:2 with lines lc rgb '#c0c8e0' title 'train (per step)', "
              "$d using 1:3 with lines lw 2 lc rgb '#2050b0' title 'train (smoothed)', "
              "$d using 1:4 with linespoints pt 7 lw 2 lc rgb '#d04020' title 'held-out text'\n";
    std::fwrite(script.data(), 1, script.size(), gp);
    if (pclose(gp) != 0) return "gnuplot failed: no plot written";
    return "loss curves: " + file;
}

/// Prints the model: a summary by module type, or the whole tree with --print-model.
void describe_model(const pt::tree& model, const options& o) {
    std::cout << (o.print_model ? pt::pformat(model) + "\n" : pt::summary(model));
    const auto count = pt::count_parameters(model);
    if (!o.untied)
        std::cout << "the tie saves " << count.expanded_elements - count.elements
                  << " parameters: head.weight is embed.weight, trained once\n";
    std::cout << "\n";
}

int run(options o, parallel& par) {
    if (!o.resume.empty()) adopt_saved_run(o, o.resume);
    const corpus text(o.text);
    if (text.ids.size() - text.split < o.context + 2)
        throw std::runtime_error(fmt::format(
            "'{}' is too short: its held-out tenth ({} characters) is shorter than one window "
            "of --context {} + 2",
            o.text, text.ids.size() - text.split, o.context));
    const gpt::config cfg{text.alphabet.size(), o.context, o.dim, o.layers, o.heads, !o.untied};
    const rnd::key root = rnd::make_key(o.seed);
    pt::tree model = par.start(gpt::make(rnd::fold_in(root, 0), cfg));
    const std::size_t trained = pt::count_parameters(model).elements;

    // What multiplies the matrices on this machine, and a one-line warning when the BLAS
    // silently runs generic kernels on a CPU that supports more.
    const pt::compute_backend& backend = pt::backend_info();
    std::cout << pt::to_string(backend) << "\n";
    if (!backend.warning.empty()) std::cerr << backend.warning << "\n";
    if (const std::string notice = pt::bfloat16_matmul_notice(o.precision); !notice.empty())
        std::cerr << notice << "\n";
    else if (o.precision == pt::matmul_precision::bfloat16)
        std::cout << "training products in bfloat16 (float32 accumulation, weights and "
                     "optimizer state; held-out losses in float32)\n";
    std::cout << "paramtree char-level GPT on " << o.text << " (" << text.ids.size()
              << " characters, " << text.alphabet.size() << " distinct; the last "
              << text.ids.size() - text.split << " held out)";
    if (par.size > 1)
        std::cout << ", data parallel on " << par.size << " processes (" << o.batch / par.size
                  << "-" << (o.batch + par.size - 1) / par.size << " sequences each per step)";
    std::cout << "\n\n";
    describe_model(model, o);

    // AdamW (no decay on biases, norms and positions), warm-up then cosine decay over the
    // whole run, clipping.
    namespace opt = pt::optim;
    const auto decay = [](const pt::path& p, const pt::tree&) {
        const std::string k = pt::keystr(p);
        return k.ends_with(".weight") && k.find("norm") == std::string::npos &&
               !k.starts_with(".pos");
    };
    const auto lr = opt::warmup_cosine_decay_schedule(
        0.0, o.lr, static_cast<std::int64_t>(std::min<std::size_t>(50, o.steps / 10)),
        static_cast<std::int64_t>(std::max<std::size_t>(o.steps, 1)), o.lr * 0.1);
    const opt::transformation adamw =
        opt::chain({opt::clip_by_global_norm(1.0, opt::nonfinite_policy::error),
                    opt::adamw(lr, 0.9, 0.99, 1e-8, 0.01, decay)});
    // --freeze: the matched parameters get no update and no Adam moments (a tie is frozen or
    // trained as a whole).
    const opt::transformation optimizer =
        o.freeze.empty() ? adamw : opt::freeze(pt::pattern(o.freeze), adamw);
    pt::tree state = optimizer.init(model);
    if (!o.freeze.empty()) {
        const auto bytes = [](const pt::tree& t) {
            std::size_t n = 0;
            for (const pt::array& a : pt::views::arrays(t))
                n += a.nbytes();
            return n;
        };
        // The labels freeze kept in its state say which stored parameters are frozen.
        const auto labels = pt::leaves(state["labels"]);
        const auto params = pt::leaves(model);
        std::size_t frozen = 0, total = 0;
        for (std::size_t i = 0; i < params.size(); ++i) {
            if (!params[i].is_array()) continue;
            total += params[i].as_array().size();
            if (labels[i].as<std::string>() == "frozen") frozen += params[i].as_array().size();
        }
        std::cout << fmt::format("--freeze {}: {} of {} parameters frozen; optimizer state "
                                 "{:.2f} MiB instead of {:.2f} MiB\n",
                                 o.freeze, frozen, total, double(bytes(state)) / (1 << 20),
                                 double(bytes(adamw.init(model))) / (1 << 20));
    }
    std::size_t first_step = 0;
    if (!o.resume.empty()) {
        const pt::tree loaded = pt::load(o.resume, checkpoint(model, state, 0, o));
        model = loaded["model"];
        state = loaded["optimizer"];
        first_step = static_cast<std::size_t>(loaded["step"].as_array().item());
        std::cout << "resumed from " << o.resume << " at step " << first_step << " of " << o.steps
                  << "\n";
    }
    const std::size_t last = o.stop_at > 0 ? std::min(o.stop_at, o.steps) : o.steps;
    if (first_step >= last)
        throw std::runtime_error(fmt::format(
            "the run is at step {} already: nothing to train before step {} (a larger --steps "
            "extends it)",
            first_step, last));

    // Fixed held-out windows measure the loss on text the model never trains on. Processes
    // split them like a training batch (each would otherwise repeat the whole evaluation,
    // 4% of a data-parallel run's time at 2 processes) and average their losses.
    constexpr std::size_t eval_windows = 32;
    const auto [eval_first, eval_last] = par.slice(eval_windows);
    const auto [eval_x, eval_y] =
        text.rows(rnd::fold_in(root, 1), eval_windows, o.context, eval_first, eval_last, true);
    // The bindings are captured by name: clang 14 does not capture structured bindings.
    const auto eval_loss = [&, eval_first = eval_first, eval_last = eval_last, &eval_x = eval_x,
                            &eval_y = eval_y](const pt::tree& m) {
        const std::size_t mine = eval_last - eval_first;
        const pt::array local = mine > 0 ? gpt::loss(m, eval_x, eval_y) : pt::array::scalar(0.0f);
        return par.average(pt::tree(local), mine).as_array().item();
    };
    const double initial = eval_loss(model);
    std::cout << "held-out loss before training: " << initial
              << " (uniform guessing: " << std::log(static_cast<double>(text.alphabet.size()))
              << ")\n";

    std::ofstream log;
    if (!o.log.empty() && par.rank == 0) {
        log.open(o.log);
        if (!log) throw std::runtime_error("cannot write the log '" + o.log + "'");
        log << "step,train_loss,eval_loss,tokens_per_s,lr\n";
    }
    // The held-out loss before training starts both the log and the plot.
    std::vector<history_row> history{
        {first_step, std::nan(""), initial, std::nan(""), std::nan("")}};
    if (log.is_open()) write_log_row(log, history.back());

    // Under mpirun standard output may be a pseudo-terminal, but it is a log: one line a report.
    const bool tty = isatty(STDOUT_FILENO) != 0 && par.size == 1;
    const auto step_fn =
        pt::value_and_grad([remat = o.remat](const pt::tree& m, const pt::array& x,
                                             const pt::array& y, const rnd::key& k) {
            return gpt::loss(m, x, y, pt::nn::context::train(k), remat);
        });
    const std::size_t every = std::max<std::size_t>(1, (last - first_step) / 10);
    held_out_record record{initial, first_step, initial};
    std::size_t trained_to = last;
    const auto start = std::chrono::steady_clock::now();
    double interval_sum = 0; // train losses since the last report: their mean is reported
    std::size_t interval_steps = 0;
    for (std::size_t step = first_step; step < last; ++step) {
        // Batches and dropout are keyed by the global step: a resumed run sees the same data.
        const rnd::key k = rnd::fold_in(root, static_cast<std::uint32_t>(step + 2));
        const auto [first, last_row] = par.slice(o.batch);
        const auto [x, y] = text.rows(k, o.batch, o.context, first, last_row);
        // Dropout keyed by the process too: its rows are other rows of the global batch. The
        // forward and backward products run at --precision; the update stays float32.
        auto [local_loss, local_grads] = [&, &x = x, &y = y] {
            const pt::precision_scope precision(o.precision);
            return step_fn(model, x, y,
                           rnd::fold_in(rnd::fold_in(k, 1), static_cast<std::uint32_t>(par.rank)));
        }();
        // One all-reduce carries the gradients and the loss (the pruned tree: the tie once).
        const pt::tree reduced =
            par.mean(pt::tuple({local_grads, pt::tree(local_loss)}), last_row - first);
        const pt::tree grads = reduced[0];
        const pt::array loss = reduced[1].as_array();
        // A diverged run stops with the step that diverged, before its update reaches the
        // parameters (the optimizer's clipping raises on non-finite gradients as well).
        if (!std::isfinite(loss.item())) {
            if (tty) std::cout << "\n";
            std::cerr << "char_lm: stopped at step " << step + 1 << ": the loss is " << loss.item()
                      << " (diverged; try a smaller --lr). The parameters of step " << step
                      << " are kept.\n";
            return 2;
        }
        // One pass over every leaf: clipping's factor, the AdamW moments, the decay and the
        // new parameters together (opt::step fuses what update + apply_updates would do).
        opt::step_result result;
        try {
            result = opt::step(optimizer, grads, state, model);
        } catch (const pt::value_error& e) {
            if (tty) std::cout << "\n";
            std::cerr << "char_lm: stopped at step " << step + 1 << ": a gradient is not finite ("
                      << e.what() << ")\n";
            return 2;
        }
        model = std::move(result.params);
        state = std::move(result.state);

        const std::size_t done = step + 1 - first_step;
        interval_sum += loss.item();
        ++interval_steps;
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double tokens_per_s = static_cast<double>(done * o.batch * o.context) / elapsed;
        const bool report = done % every == 0 || step + 1 == last;
        const double eval = report ? eval_loss(model) : std::nan("");
        history.push_back(
            {step + 1, loss.item(), eval, tokens_per_s, lr(static_cast<std::int64_t>(step))});
        if (log.is_open()) write_log_row(log, history.back());
        const double eta =
            elapsed / static_cast<double>(done) * static_cast<double>(last - step - 1);
        std::string line = fmt::format("step {}/{}  train {:.3f}", step + 1, o.steps,
                                       interval_sum / static_cast<double>(interval_steps));
        if (report) interval_sum = 0, interval_steps = 0;
        if (report) line += fmt::format("  held-out {:.3f}", eval);
        line += fmt::format("  {:.0f} tokens/s  elapsed {}  ETA {}", tokens_per_s, human(elapsed),
                            human(eta));
        if (report && record.add(eval, step + 1)) {
            line += "  (best)";
            if (!o.save_best.empty() && par.rank == 0)
                pt::save(o.save_best, checkpoint(model, state, step + 1, o));
        }
        if (report && tty)
            std::cout << "\r" << line << "\033[K\n" << std::flush; // kept: it has the eval
        else if (tty)
            std::cout << "\r" << line << "\033[K" << std::flush; // one updating line
        else if (report)
            std::cout << line << std::endl; // flushed: piped runs show progress as it happens
        if (o.patience > 0 && record.since_best >= o.patience && step + 1 < last) {
            std::cout << fmt::format("stopped early at step {}: no better held-out loss in the "
                                     "last {} evaluation{} (--patience)\n",
                                     step + 1, o.patience, o.patience == 1 ? "" : "s");
            trained_to = step + 1;
            break;
        }
    }

    const double train_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double final_loss = eval_loss(model);
    std::cout << fmt::format("\nheld-out loss after training: {:.4f} (was {:.4f}; best {:.4f} at "
                             "step {})\n",
                             final_loss, initial, record.best, record.best_step);
    // Two evaluations in a row worse than the one before: the model has begun to learn the
    // training text by heart. Said, with what to do about it.
    if (record.rises >= 2)
        std::cout << fmt::format("warning: the held-out loss rose in the last {} evaluations "
                                 "(overfitting: the best was {:.4f} at step {}); --save-best "
                                 "keeps the best model, --patience stops there, fewer --steps "
                                 "or a longer --text help too\n",
                                 record.rises, record.best, record.best_step);
    if (!o.save_best.empty() && par.rank == 0 && record.best_step > first_step)
        std::cout << "best model: " << o.save_best << " (step " << record.best_step << ")\n";
    // The high-water mark of the whole process: with --remat it falls by the activations the
    // tape no longer keeps for every block at once.
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const pt::memory_stats cache = pt::memory_statistics();
    std::cout << fmt::format(
        "{:.1f} ms per step; peak memory {:.0f} MiB{} (buffer cache: {} blocks reused, {} "
        "mapped)\n",
        1e3 * train_seconds / double(std::max<std::size_t>(1, trained_to - first_step)),
        double(usage.ru_maxrss) / 1024.0, o.remat ? ", blocks rematerialised" : "", cache.reused,
        cache.mapped);

    // The tie held: one embedding buffer serves both places, and there is still one leaf.
    bool tie_held = true;
    if (par.size > 1) {
        const bool same = par.identical(model) && par.identical(state);
        std::cout << "parameters and optimizer state bitwise identical on all " << par.size
                  << " processes: " << (same ? "yes" : "NO") << "\n";
        std::cout << fmt::format(
            "gradient all-reduce: {} bytes per step, {:.2f} ms per step "
            "({:.1f}% of the training time)\n",
            par.reduce_bytes, 1e3 * par.reduce_seconds / double(trained_to - first_step),
            100 * par.reduce_seconds /
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        tie_held = same;
    }
    if (!o.untied) {
        const pt::tree full = pt::expand(model);
        tie_held = tie_held &&
                   pt::same_storage(full["embed"]["weight"].as_array(),
                                    full["head"]["weight"].as_array()) &&
                   pt::count_parameters(model).elements == trained;
        std::cout << "tie held: " << (tie_held ? "yes" : "NO")
                  << " (head.weight is embed.weight, one buffer, one Adam moment)\n";
    }
    if (!o.save.empty() && par.rank == 0) {
        pt::save(o.save, checkpoint(model, state, trained_to, o));
        std::cout << "saved " << o.save << " at step " << trained_to << " ("
                  << std::filesystem::file_size(o.save)
                  << " bytes; the tied weight is stored once)\n";
    }
    if (log.is_open()) std::cout << "log: " << o.log << "\n";
    if (!o.plot.empty() && par.rank == 0)
        std::cout << plot(history, o.plot,
                          fmt::format("char-level GPT ({}), {}",
                                      o.untied ? "untied" : "tied embedding",
                                      fs::path(o.text).filename().string()))
                  << "\n";
    if (o.sample > 0 && par.rank == 0)
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
    parallel par;
#ifdef PARAMTREE_HAVE_MPI
    // MPI only when started by mpirun (scripts/demo --ranks N): a plain start stays a plain
    // process, without MPI's singleton start-up.
    std::optional<pt::distributed::environment> mpi;
    if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr) {
        mpi.emplace(argc, argv);
        par.comm = pt::distributed::communicator::world();
        par.rank = par.comm->rank();
        par.size = par.comm->size();
    }
#endif
    // Process 0 speaks for all: the others train silently (their results are checked equal).
    if (par.rank != 0) {
        std::cout.rdbuf(nullptr);
        std::cerr.rdbuf(nullptr);
    }
    try {
        return run(parse(argc, argv), par);
    } catch (const std::exception& e) {
        std::cerr << "char_lm: " << e.what() << "\n";
        return 2;
    }
}
