// paramtree — everything except the xtensor bridge (<paramtree/xtensor.hpp>).
#pragma once

#include <paramtree/alias.hpp>
#include <paramtree/array.hpp>
#include <paramtree/at.hpp>
#include <paramtree/autodiff.hpp>
#include <paramtree/diff.hpp>
#include <paramtree/dot.hpp>
#include <paramtree/error.hpp>
#include <paramtree/flatten.hpp>
#include <paramtree/map.hpp>
#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/nn/module.hpp>
#include <paramtree/ops.hpp>
#include <paramtree/optim.hpp>
#include <paramtree/partition.hpp>
#include <paramtree/path.hpp>
#include <paramtree/print.hpp>
#include <paramtree/random.hpp>
#include <paramtree/ravel.hpp>
#include <paramtree/record.hpp>
#include <paramtree/reference.hpp>
#include <paramtree/transform.hpp>
#include <paramtree/tree.hpp>
#include <paramtree/treedef.hpp>
#include <paramtree/shared.hpp>
