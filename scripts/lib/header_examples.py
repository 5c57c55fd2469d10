#!/usr/bin/env python3
"""Turns the examples in the public headers' doc comments into one C++ program (a test).

An example is a run of `///` comment lines indented four spaces past the comment's text (the
Markdown code block Doxygen renders). Each becomes the body of its own function and runs in
order; `assert` stays active and an exception or failed assert fails the program, naming the
header line. Examples may use the names of FIXTURE below without declaring them, and may
redeclare any of them (they run in a nested scope).

    header_examples.py [--mpi] OUT.cpp HEADER...

With --mpi the program initialises MPI for its whole run (the examples of distributed.hpp,
run under mpirun) and the fixture adds `world`, the communicator of all processes.
"""
import re
import sys

from docs_extract import program  # the same program shape as the guides' examples

PRELUDE = """// Generated from the public headers by scripts/lib/header_examples.py: do not edit.
#undef NDEBUG
#include <cassert>
#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <paramtree/nn/attention.hpp>
#include <paramtree/nn/layers.hpp>
#include <paramtree/paramtree.hpp>
#include <paramtree/ranges.hpp>
#include <paramtree/xtensor.hpp>

#include <xtensor/xmath.hpp>

namespace pt = paramtree;
"""

# The names header examples use without declaring them: a few values of each kind a reader
# would have in hand (a tree, parameters and their gradients, a model, a tied language model).
FIXTURE = """\
    [[maybe_unused]] const pt::random::key key = pt::random::make_key(0);
    [[maybe_unused]] const pt::random::key k1 = pt::random::fold_in(key, 1),
                                           k2 = pt::random::fold_in(key, 2);
    // {'layers': [Linear(weight=f32[4,4], bias=f32[4])], 'step': 0, 'w': f32[3]}
    [[maybe_unused]] pt::tree t = pt::dict({{"w", pt::array::ones({3})},
                                            {"layers", pt::list({pt::nn::linear(k1, 4, 4)})},
                                            {"step", std::int64_t{0}}});
    // {'b': f32[1], 'w': f32[3,1]}, gradients of the same structure, data x [8,3], y [8,1]
    [[maybe_unused]] pt::tree params = pt::dict({{"w", pt::random::normal(k1, {3, 1})},
                                                 {"b", pt::array::zeros({1})}});
    [[maybe_unused]] pt::tree grads = pt::tree_map(
        [](const pt::tree& p) { return pt::tree(p.as_array() * 0.5); }, params);
    [[maybe_unused]] const pt::array x = pt::random::normal(k1, {8, 3});
    [[maybe_unused]] const pt::array y = pt::random::normal(k2, {8, 1});
    // MLP(linear1=Linear(4 -> 4), linear2=Linear(4 -> 4))
    [[maybe_unused]] pt::tree model = pt::record(
        "MLP", {{"linear1", pt::nn::linear(k1, 4, 4)}, {"linear2", pt::nn::linear(k2, 4, 4)}});
    // Equinox's language model: (Embedding(weight=f32[10,4]), Linear(weight=f32[10,4],
    // bias=f32[10])), and lm: the same with the linear weight tied to the embedding's.
    [[maybe_unused]] const pt::tree embedding =
        pt::record("Embedding", {{"weight", pt::random::normal(k1, {10, 4})}});
    [[maybe_unused]] const pt::tree linear = pt::record(
        "Linear", {{"weight", pt::random::normal(k2, {10, 4})}, {"bias", pt::array::zeros({10})}});
    [[maybe_unused]] pt::tree lm =
        pt::share(pt::tuple({embedding, linear}), "[1].weight", "[0].weight");
"""

COMMENT = re.compile(r"^\s*///(.*)$")
CODE = re.compile(r"^ {5}(.*)$")  # `///` + one space of text + four of code block


def examples(path):
    """(line, code) for every example of one header, lines 1-based."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = COMMENT.match(lines[i])
        if not (m and CODE.match(m.group(1))):
            i += 1
            continue
        start, code = i + 1, []
        while i < len(lines):
            m = COMMENT.match(lines[i])
            if not m:
                break
            body = m.group(1)
            if CODE.match(body):
                code.append(CODE.match(body).group(1))
            elif body.strip() == "":
                # A blank comment line continues the example only if more code follows.
                nxt = COMMENT.match(lines[i + 1]) if i + 1 < len(lines) else None
                if not (nxt and CODE.match(nxt.group(1))):
                    break
                code.append("")
            else:
                break
            i += 1
        out.append((start, "\n".join(code)))
    return out


MPI_PRELUDE = """#include <paramtree/distributed.hpp>
// MPI for the whole program: the examples' own environments are then no-ops.
static const paramtree::distributed::environment header_examples_mpi;
"""
MPI_FIXTURE = """\
    [[maybe_unused]] const auto world = pt::distributed::communicator::world();
"""


def main() -> int:
    args = sys.argv[1:]
    mpi = args[:1] == ["--mpi"]
    if mpi:
        args = args[1:]
    out_path, headers = args[0], args[1:]
    fixture = FIXTURE + (MPI_FIXTURE if mpi else "")
    found = []
    for header in headers:
        for line, code in examples(header):
            # The fixture, then the example in a nested scope (it may redeclare fixture names).
            found.append((f"{header}:{line}", f'{fixture}    {{\n#line {line} "{header}"\n{code}\n    }}'))
    if not found:
        print("header_examples.py: no examples found", file=sys.stderr)
        return 1
    text = program([PRELUDE + (MPI_PRELUDE if mpi else "")], found, "header examples")
    open(out_path, "w", encoding="utf-8").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
