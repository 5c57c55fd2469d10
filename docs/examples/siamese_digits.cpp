// The Siamese showcase: two handwritten digits go through the SAME convolutional tower (one
// `Shared` tie: the right tower is the left one, stored once, its gradient the sum of both
// branches) and a contrastive loss learns an embedding where the distance says whether the
// two digits are of one class. Data: the 8x8 digits Debian's python3-sklearn ships (1,797
// images; digits_data.py writes them as CSV), shuffled once with a fixed seed: 1,200 images
// train, 300 choose the distance threshold, and 297 are held out — the accuracy is measured
// on pairs of digits the model never saw.
//
// Usage: siamese_digits --data digits.csv [--steps N] [--batch PAIRS] [--seed S] [--check A]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <paramtree/nn/conv.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/paramtree.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace pt = paramtree;
namespace nn = paramtree::nn;

namespace {

struct digits {
    std::vector<float> pixels; // [n, 64], scaled to [0, 1]
    std::vector<int> labels;
    [[nodiscard]] std::size_t size() const { return labels.size(); }
};

digits read_digits(const std::string& file) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error("cannot read the digits data '" + file + "'");
    digits d;
    std::string line;
    while (std::getline(in, line)) {
        std::stringstream row(line);
        std::string cell;
        std::vector<int> values;
        while (std::getline(row, cell, ','))
            values.push_back(std::stoi(cell));
        if (values.size() != 65)
            throw std::runtime_error(fmt::format("{}: line {}: expected 65 values, found {}", file,
                                                 d.size() + 1, values.size()));
        for (int i = 0; i < 64; ++i)
            d.pixels.push_back(static_cast<float>(values[i]) / 16.0f);
        d.labels.push_back(values[64]);
    }
    return d;
}

/// Images `ids` as one batch [n, 1, 8, 8].
pt::array images(const digits& d, const std::vector<std::size_t>& ids) {
    return pt::array::build<float>({ids.size(), 1, 8, 8}, [&](std::span<float> out) {
        for (std::size_t k = 0; k < ids.size(); ++k)
            std::copy_n(d.pixels.begin() + static_cast<std::ptrdiff_t>(ids[k] * 64), 64,
                        out.begin() + static_cast<std::ptrdiff_t>(k * 64));
    });
}

/// The data set in a fixed shuffled order (sklearn's train_test_split shuffles too): the
/// file lists the digits writer by writer, so the split by position below would otherwise
/// test on writers the model never saw any digit of.
digits shuffled(const digits& d) {
    std::vector<std::size_t> order(d.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(1797));
    digits out;
    for (const std::size_t i : order) {
        out.pixels.insert(out.pixels.end(), d.pixels.begin() + static_cast<std::ptrdiff_t>(i * 64),
                          d.pixels.begin() + static_cast<std::ptrdiff_t>(i * 64 + 64));
        out.labels.push_back(d.labels[i]);
    }
    return out;
}

/// Pairs of images from [first, last): half of one class, half of two, in random order.
struct pairs {
    std::vector<std::size_t> a, b;
    std::vector<float> same; // 1 for one class
};

pairs sample_pairs(const digits& d, std::size_t first, std::size_t last, std::size_t n,
                   std::mt19937_64& rng) {
    std::array<std::vector<std::size_t>, 10> by_class;
    for (std::size_t i = first; i < last; ++i)
        by_class[static_cast<std::size_t>(d.labels[i])].push_back(i);
    std::uniform_int_distribution<std::size_t> any(first, last - 1);
    pairs p;
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = any(rng);
        const bool same = k % 2 == 0;
        const auto& mates = by_class[static_cast<std::size_t>(d.labels[i])];
        std::size_t j = i;
        if (same) {
            j = mates[std::uniform_int_distribution<std::size_t>(0, mates.size() - 1)(rng)];
        } else {
            while (d.labels[j] == d.labels[i])
                j = any(rng);
        }
        p.a.push_back(i);
        p.b.push_back(j);
        p.same.push_back(same ? 1.0f : 0.0f);
    }
    return p;
}

/// One tower: two 3x3 convolutions with ReLU and 2x2 max pooling, then a linear embedding.
pt::tree tower(const pt::random::key& key) {
    const auto k = pt::random::split(key, 3);
    return nn::sequential({nn::conv2d(k[0], 1, 16, {3, 3}, {.padding = {1, 1}}),
                           nn::activation("relu"), nn::max_pool2d({}),
                           nn::conv2d(k[1], 16, 32, {3, 3}, {.padding = {1, 1}}),
                           nn::activation("relu"), nn::max_pool2d({}), nn::flatten(),
                           nn::dropout(0.3), nn::linear(k[2], 32 * 2 * 2, 32)});
}

/// A tower's embeddings, scaled onto the unit sphere: distances then lie in [0, 2], and the
/// model cannot separate classes merely by inflating the embedding (it generalises better).
pt::array embed(const pt::tree& tower, const pt::array& x, const nn::context& ctx) {
    const pt::array e = nn::apply(tower, x, ctx);
    return e / pt::sqrt(pt::sum(e * e, {1}, true) + 1e-12);
}

/// Squared distances between the two branches' embeddings, one per pair.
pt::array distance2(const pt::tree& model, const pt::array& xa, const pt::array& xb,
                    const nn::context& ctx = {}) {
    const pt::tree m = pt::expand(model);
    const pt::array d =
        embed(m["left"], xa, ctx.child("left")) - embed(m["right"], xb, ctx.child("right"));
    return pt::sum(d * d, {1});
}

constexpr double margin = 1.0;

/// Contrastive loss (Hadsell, Chopra, LeCun 2006): pull pairs of one class together, push
/// others at least `margin` apart.
pt::array contrastive(const pt::tree& model, const pt::array& xa, const pt::array& xb,
                      const pt::array& same, const pt::random::key& key) {
    const pt::array d2 = distance2(model, xa, xb, nn::context::train(key));
    const pt::array gap = pt::relu(margin - pt::sqrt(d2 + 1e-9));
    return pt::mean(same * d2 + (1.0 - same) * gap * gap);
}

/// The fraction of pairs whose distance falls on the right side of `threshold`.
double accuracy(const std::vector<double>& d2, const std::vector<float>& same, double threshold) {
    std::size_t right = 0;
    for (std::size_t k = 0; k < d2.size(); ++k)
        right += (d2[k] < threshold * threshold) == (same[k] > 0.5f);
    return static_cast<double>(right) / static_cast<double>(d2.size());
}

} // namespace

int main(int argc, char** argv) {
    std::string data;
    std::size_t steps = 1500, batch = 64;
    std::uint64_t seed = 0;
    double check = 0;
    CLI::App app{"A Siamese CNN with tied towers learns whether two handwritten digits match"};
    app.add_option("--data", data, "the digits as CSV (digits_data.py writes it)")->required();
    app.add_option("--steps", steps, "AdamW steps (default 1500)");
    app.add_option("--batch", batch, "pairs per step (default 64)");
    app.add_option("--seed", seed, "random seed (default 0)");
    app.add_option("--check", check, "exit 1 unless the held-out pair accuracy reaches this");
    CLI11_PARSE(app, argc, argv);
    try {
        const digits d = shuffled(read_digits(data));
        // Training images, then validation images (they choose the distance threshold), then
        // the held-out test images (they only measure).
        const std::size_t held_out = 297, test_begin = d.size() - held_out;
        const std::size_t train_end = test_begin - 300;
        std::cout << fmt::format("{} digits: {} for training, {} to choose the threshold, the "
                                 "last {} held out\n",
                                 d.size(), train_end, test_begin - train_end, held_out);

        // The right tower is the left one: one Shared tie, one stored copy.
        const pt::tree untied =
            pt::record("Siamese", {{"left", tower(pt::random::make_key(seed))},
                                   {"right", tower(pt::random::make_key(seed + 1))}});
        pt::tree model = pt::share(untied, ".right", ".left");
        std::cout << pt::summary(model) << "\n";

        const pt::optim::transformation opt = pt::optim::adamw(1e-3, 0.9, 0.999, 1e-8, 1e-4);
        pt::tree state = opt.init(model);
        const auto step = pt::value_and_grad(contrastive);
        std::mt19937_64 rng(seed);
        const auto start = std::chrono::steady_clock::now();
        const std::size_t every = std::max<std::size_t>(1, steps / 5);
        double recent = 0;
        for (std::size_t s = 1; s <= steps; ++s) {
            const pairs p = sample_pairs(d, 0, train_end, batch, rng);
            const auto same = pt::array::from_vector<float>({batch}, p.same);
            const auto key =
                pt::random::fold_in(pt::random::make_key(seed + 3), static_cast<std::uint32_t>(s));
            auto [loss, grads] = step(model, images(d, p.a), images(d, p.b), same, key);
            auto [updates, next] = opt.update(grads, state, model);
            model = pt::optim::apply_updates(model, updates);
            state = std::move(next);
            recent += loss.item();
            if (s % every == 0) {
                std::cout << fmt::format("step {}/{}  contrastive loss {:.4f}\n", s, steps,
                                         recent / static_cast<double>(every));
                recent = 0;
            }
        }
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

        // The threshold is chosen on validation pairs; the accuracy is on held-out pairs.
        std::mt19937_64 eval_rng(seed + 7);
        const pairs calib = sample_pairs(d, train_end, test_begin, 2000, eval_rng);
        const pairs test = sample_pairs(d, test_begin, d.size(), 2000, eval_rng);
        const auto distances = [&](const pairs& p) {
            return distance2(model, images(d, p.a), images(d, p.b)).to_doubles();
        };
        const auto calib_d2 = distances(calib);
        double best = margin / 2, best_acc = 0;
        for (double t = 0.05; t < 2 * margin; t += 0.01)
            if (const double a = accuracy(calib_d2, calib.same, t); a > best_acc)
                best = t, best_acc = a;
        const double test_acc = accuracy(distances(test), test.same, best);
        std::cout << fmt::format("trained {} steps of {} pairs in {:.1f} s ({:.2f} ms per step)\n",
                                 steps, batch, seconds, 1e3 * seconds / double(steps));
        std::cout << fmt::format("held-out pair accuracy: {:.1f}% (threshold {:.2f}, validation "
                                 "pairs {:.1f}%)\n",
                                 100 * test_acc, best, 100 * best_acc);
        // The tie held: the right tower is still the left one, stored once.
        const pt::tree full = pt::expand(model);
        const bool tied = pt::same_storage(full["left"]["layers"][0]["weight"].as_array(),
                                           full["right"]["layers"][0]["weight"].as_array()) &&
                          model.num_leaves() == tower(pt::random::make_key(0)).num_leaves();
        std::cout << "tie held: " << (tied ? "yes" : "NO")
                  << " (one tower stored and trained; both branches use it)\n";
        if (check > 0 && !(test_acc >= check && tied)) {
            std::cerr << fmt::format("check failed: accuracy {:.3f} < {:.3f} or tie broken\n",
                                     test_acc, check);
            return 1;
        }
    } catch (const std::exception& e) {
        std::cerr << "siamese_digits: " << e.what() << "\n";
        return 2;
    }
    return 0;
}
