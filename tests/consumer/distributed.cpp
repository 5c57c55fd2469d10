// Built against the installed paramtree::distributed (tests/install_consumer.sh): a shard plan
// of a tied model needs no running MPI job, only the library and its headers.
#include <paramtree/distributed.hpp>
#include <paramtree/paramtree.hpp>

#include <iostream>

int main() {
    namespace pt = paramtree;
    const pt::tree model = pt::share(
        pt::list({pt::array::ones({4}), pt::array::ones({4}), pt::array::ones({8})}), "[1]", "[0]");
    const auto plan = pt::distributed::shard_plan(model, 2);
    if (plan.owned(model, 0).num_leaves() + plan.owned(model, 1).num_leaves() == 0) return 1;
    std::cout << "consumer (distributed): ok\n";
    return 0;
}
