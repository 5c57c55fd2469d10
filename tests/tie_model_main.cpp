// The tie model's long run (scripts/fuzz ties): random cases from a starting seed until the
// time is up; on a failure, the shrunk case as C++ and exit status 1.
// Usage: tie_model SECONDS [FIRST_SEED]
#include "tie_model.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

int main(int argc, char** argv) {
    const double seconds = argc > 1 ? std::stod(argv[1]) : 60;
    std::uint64_t seed = argc > 2 ? std::stoull(argv[2]) : 0;
    const auto file = std::filesystem::temp_directory_path() /
                      ("pt_tie_model_" + std::to_string(::getpid()) + ".safetensors");
    tie_model::coverage seen;
    const tie_model::runner run(file, &seen);
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t n = 0;
    const auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    for (; elapsed() < seconds; ++seed, ++n) {
        const auto c = tie_model::random_case(seed);
        if (const auto f = run.run(c)) {
            const auto small = tie_model::shrink(tie_model::runner(file), c, f->check);
            const auto again = tie_model::runner(file).run(small);
            std::printf("FAILED at seed %llu: %s\n%s\n%s", static_cast<unsigned long long>(seed),
                        f->check.c_str(), (again ? again->detail : f->detail).c_str(),
                        tie_model::cpp_case(small).c_str());
            return 1;
        }
    }
    std::filesystem::remove(file);
    std::printf("tie model: %llu sequences in %.0f s, no failure\n%s",
                static_cast<unsigned long long>(n), elapsed(), seen.report().c_str());
    return 0;
}
