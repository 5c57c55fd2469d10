#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the Google Benchmark JSON files in a folder."""
import json
import shutil
import statistics
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def medians(path):
    data = json.load(open(path))
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") not in (None, "median"):
            continue
        name = b.get("run_name", b["name"])
        out[name.removesuffix("/real_time")] = b
    return data["context"], out


def figure(name, text):
    """`text` marked as the figure `name`: pages that quote it get it from here
    (scripts/lib/figures.py sync, run by scripts/bench; checked by the docs suite)."""
    return f"<!-- figure:{name} -->{text}<!-- /figure -->"


def ms(seconds):
    return f"{seconds * 1e3:.3f} ms"


def cpu_info():
    """The first CPU's fields of /proc/cpuinfo (empty where there is none)."""
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_model():
    return cpu_info().get("model name") or platform.processor()


def cpu_identity():
    """`model name (family F model M; flags that matter here)`: sections measured apart from
    the rest name the CPU they ran on."""
    info = cpu_info()
    if not info:
        return platform.processor()
    flags = set(info.get("flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {' '.join(wanted) or 'no AVX2'}; {os.cpu_count()} CPUs)")


def tree_section(bench):
    shapes = ["wide", "mlp", "transformer", "deep"]
    ops = [("flatten", "flatten (treedef cached in the root)", 2.0),
           ("flatten_build", "flatten building the treedef", None),
           ("unflatten", "unflatten", 4.0),
           ("round_trip", "flatten + unflatten", None),
           ("map_identity", "tree_map identity", None),
           ("view_leaves", "`views::leaves`: visit every leaf (no handle copied)", 1.0),
           ("flatten_with_path", "flatten_with_path", None),
           ("view_leaves_with_path", "`views::leaves_with_path` (path kept incrementally)", None)]
    lines = ["## Tree operations per leaf",
             "",
             "Time per leaf (median of 5 runs) and ratio to the **limit**: copying the N leaf handles "
             "of the same tree from one vector into a reserved vector, measured in the same run.",
             "Shapes: *wide* = one dict of 100,000 leaves; *mlp* = 1,000 `Linear` records (weight + "
             "bias); *transformer* = 48 blocks (attention q/k/v/o + fc1/fc2 + two layer norms, each "
             "weight + bias); *deep* = a chain of 1,000 nested lists.",
             "",
             "| operation | " + " | ".join(shapes) + " | target |",
             "|---|" + "---|" * len(shapes) + "---|"]
    # The counter is a rate inverted: seconds per leaf.
    limit = {s: bench[f"limit/{s}"]["ns_per_leaf"] * 1e9 for s in shapes}
    lines.append("| limit (copy N handles) | " +
                 " | ".join(f"{limit[s]:.1f} ns" for s in shapes) + " | |")
    for op, label, target in ops:
        cells = []
        for s in shapes:
            ns = bench[f"{op}/{s}"]["ns_per_leaf"] * 1e9
            cells.append(f"{ns:.1f} ns ({ns / limit[s]:.2f}x)")
        t = f"≤ {target:g}x" if target else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {t} |")
    lines += ["",
              "### tree_at of one leaf",
              "",
              "| shape | tree_at (one leaf) | flatten + unflatten | ratio | target |",
              "|---|---|---|---|---|"]
    for s in shapes:
        at = bench[f"tree_at/{s}"]["real_time"]
        rt = bench[f"round_trip/{s}"]["real_time"]
        target = "< 1%" if s == "mlp" else ""
        lines.append(f"| {s} | {at / 1e3:.2f} µs | {rt / 1e3:.1f} µs | {100 * at / rt:.2f}% | {target} |")
    lines += ["",
              "`tree_at` copies only the nodes on the path (their child arrays): its cost follows depth "
              "and node widths, so it is large for *wide* (one node with 100,000 children) and *deep* "
              "(1,000 levels), and tiny for *mlp* and *transformer*.",
              "",
              "### treedef equality",
              "",
              "| shape | same tree (shared block) | separately built equal trees |",
              "|---|---|---|"]
    for s in shapes:
        a = bench[f"def_equal_same/{s}"]["real_time"]
        b = bench[f"def_equal_distinct/{s}"]["real_time"]
        lines.append(f"| {s} | {a:.1f} ns | {b / 1e3:.2f} µs |")
    lines += ["",
              "Flattening a tree twice, or flattening a tree built by `unflatten`/`tree_map`/a leaf-for-leaf "
              "`tree_at`, yields the same structure block: equality is a pointer comparison (O(1)). "
              "Structures built independently are compared node by node after a hash check.",
              ""]
    return lines


def shared_section(bench):
    ns = lambda name: bench[name]["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6}[bench[name].get("time_unit", "ns")]
    per_leaf = lambda name: bench[name]["ns_per_leaf"] * 1e9
    small, big = ns("expand_pair/1"), ns("expand_pair/4096")
    return ["## Sharing",
            "",
            "### expand is zero-copy",
            "",
            "| Shared holding | expand |",
            "|---|---|",
            f"| 1x1 float32 arrays | {small:.0f} ns |",
            f"| 4096x4096 float32 arrays (64 MiB each) | {big:.0f} ns |",
            f"| ratio | {big / small:.2f} |",
            "",
            "### flatten / unflatten with ties",
            "",
            "The *mlp* shape (1,000 Linear records) without ties, and with every odd layer's weight tied "
            "to the even layer before it (500 ties, 1,500 leaves left).",
            "",
            "| operation | untied | tied |",
            "|---|---|---|",
            f"| flatten, per leaf | {per_leaf('flatten_mlp/untied'):.1f} ns | {per_leaf('flatten_mlp/tied'):.1f} ns |",
            f"| unflatten, per leaf | {per_leaf('unflatten_mlp/untied'):.1f} ns | {per_leaf('unflatten_mlp/tied'):.1f} ns |",
            f"| flatten, whole tree | {ns('flatten_mlp/untied') / 1e3:.1f} µs | {ns('flatten_mlp/tied') / 1e3:.1f} µs |",
            f"| unflatten, whole tree | {ns('unflatten_mlp/untied') / 1e3:.1f} µs | {ns('unflatten_mlp/tied') / 1e3:.1f} µs |",
            f"| expand (tied tree) | | {ns('expand_mlp') / 1e3:.1f} µs |",
            f"| share: the 500 ties made (from path objects) | | {ns('share_mlp') / 1e3:.1f} µs |",
            "",
            "Tied placeholders are structure, not leaves: a tied tree flattens to fewer leaves, and its "
            "per-leaf cost is that of its extra (leafless) nodes.",
            "",
            "`contract` of a tied autoencoder's gradient (four encoder weights [1024, 512], each decoder "
            "weight the transpose of its encoder's): "
            f"{ns('contract_autoencoder') / 1e3:,.0f} µs. It compares the gradient against the expanded "
            "structure without expanding values (2.86 ms before, when every transposed tie was copied "
            "only to be compared; 3 interleaved rounds), then transposes each decoder's gradient back "
            "and adds it to its encoder's.",
            "",
            "### aliases on a 100,000-leaf tree",
            "",
            "One dict of 100,000 leaves in which every second leaf holds the buffer of the one before "
            "(50,000 aliases).",
            "",
            "| operation | time | per leaf |",
            "|---|---|---|",
            f"| find_aliases | {ns('find_aliases_wide') / 1e6:.1f} ms | {per_leaf('find_aliases_wide'):.0f} ns |",
            f"| share_aliases (find + one share of 50,000 ties) | {ns('share_aliases_wide') / 1e6:.1f} ms | {per_leaf('share_aliases_wide'):.0f} ns |",
            ""]


def cpu_flags():
    """The vector and matrix extensions lscpu would list that matter here."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                keep = ["sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                        "avx512_bf16", "amx_bf16", "amx_tile"]
                return " ".join(f for f in keep if f in flags)
    except OSError:
        pass
    return "?"


def bench_seconds(b):
    if "ns_per_op" in b:
        return b["ns_per_op"]  # a rate inverted: seconds per op
    return b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3}[b.get("time_unit", "ns")]


def fmt_time(s):
    return f"{s * 1e9:.0f} ns" if s < 1e-6 else f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def step_matmul_flops(vocab=76, tokens=16 * 64, dim=128, layers=2, heads=4, batch=16, t=64):
    """float32 multiply-adds x2 of one demo training step: every product forward, and its two
    gradients backward (3x the forward), for the linear layers and the attention products."""
    linear = layers * (4 * dim * dim + 2 * dim * 4 * dim) + dim * vocab
    attention = layers * batch * heads * 2 * t * t * (dim // heads)
    return 3 * 2 * (tokens * linear + attention)


def autodiff_section(rounds, torch_rounds, prescott, prescott_torch, libtorch_rounds=(),
                     prescott_libtorch=()):
    """Gradients: paramtree and PyTorch eager on the same shapes, one thread each, medians of
    interleaved rounds."""
    def ours(key, runs=None):
        return statistics.median(bench_seconds(r[key]) for r in (runs or rounds))

    def theirs(key, runs=None):
        return statistics.median(t["seconds"][key] for t in (runs or torch_rounds))

    def cpp(key, runs=None):
        runs = [t for t in (runs or libtorch_rounds) if key in t["seconds"]]
        return statistics.median(t["seconds"][key] for t in runs) if runs else None

    rows = [("tape/untraced", "1,000-op chain on f32[1], no gradient: per op", None),
            ("tape/forward_backward", "the same chain, forward + backward: per op", "≤ 0.2 µs"),
            ("mlp/64x512", "MLP, batch 64, widths 512 (3 Linear, relu): forward + backward", "≥ 1.1x"),
            ("mlp/8x32", "MLP, batch 8, widths 32 (3 Linear, relu): forward + backward", "≥ 5x"),
            ("attention/4x64x256", "pre-norm causal self-attention block, [4, 64, 256], 4 heads: "
             "forward + backward (paramtree: the fused `scaled_dot_product_attention`)", "≥ 1.5x"),
            ("conv/lenet", "LeNet's second convolution (6 to 16 channels, 5x5, on [64, 6, 14, 14]) "
             "with ReLU and 2x2 max pooling: forward + backward", "≥ 1.0x"),
            ("lm_step/16x64", "the demo's GPT (tied embedding, dim 128, 2 blocks, batch 16 x 64 "
             "tokens): one AdamW training step", "≥ 1.5x")]
    ctx = rounds[0]["__context__"]
    lines = ["## Gradients against PyTorch", "",
             f"- paramtree: `{ctx.get('paramtree_backend', '?')}`",
             f"- OpenBLAS core (float64 in paramtree; everything in PyTorch): `{ctx.get('openblas_core', '?')}`",
             f"- CPU extensions: {cpu_flags()}", ""]
    if not torch_rounds:
        lines += ["PyTorch (Debian's python3-torch) was not available in this run: paramtree's times only.", "",
                  "| benchmark | paramtree |", "|---|---|"]
        for key, label, _ in rows:
            lines.append(f"| {label} | {fmt_time(ours(key))} |")
        return lines + [""]
    t0 = torch_rounds[0]
    lines += [f"Same shapes, same initialisation scheme, same loss, float32, **one thread on both sides** "
              f"(`OPENBLAS_NUM_THREADS=1`, `OMP_NUM_THREADS=1`, `torch.set_num_threads(1)`), PyTorch "
              f"{t0.get('torch_version', '?')} eager on Debian's OpenBLAS (core `{t0.get('openblas_core', '?')}`). "
              f"{len(rounds)} interleaved rounds (paramtree, PyTorch, paramtree, ...); each entry is the "
              "median over the rounds. PyTorch times include Python's per-op dispatch, which is what eager "
              "training pays. Ratio > 1: paramtree is faster.",
              "",
              "The libtorch column is PyTorch's engine through its C++ frontend (Debian libtorch-dev, "
              "`bench/libtorch_compare.cpp`), the engine a C++ team would otherwise pick.",
              "",
              "| benchmark | paramtree | PyTorch eager | ratio | libtorch C++ | ratio | target |",
              "|---|---|---|---|---|---|---|"]
    for key, label, target in rows:
        a, b, c = ours(key), theirs(key), cpp(key)
        cells = f"{fmt_time(c)} | {c / a:.2f}x" if c else "– | –"
        lines.append(f"| {label} | {figure(key + '.paramtree', fmt_time(a))} | "
                     f"{figure(key + '.pytorch', fmt_time(b))} | {figure(key + '.ratio', f'{b / a:.2f}x')} "
                     f"| {cells} | {target or ''} |")
    tokens = 16 * 64
    a, b = ours("lm_step/16x64"), theirs("lm_step/16x64")
    lines += ["",
              f"Training throughput of the demo model: **{tokens / a:,.0f} tokens/s** for paramtree "
              f"against {tokens / b:,.0f} tokens/s for PyTorch eager ({b / a:.2f}x), one thread each."]
    if prescott and prescott_torch:
        pa, pb = ours("lm_step/16x64", prescott), theirs("lm_step/16x64", prescott_torch)
        pc = cpp("lm_step/16x64", prescott_libtorch) if prescott_libtorch else None
        lt = (f", libtorch C++ {fmt_time(pc)} ({tokens / pc:,.0f} tokens/s, {pc / pa:.2f}x)"
              if pc else "")
        lines += ["",
                  "With OpenBLAS forced onto its generic **Prescott** kernels (`OPENBLAS_CORETYPE=Prescott`, "
                  "what Debian's OpenBLAS 0.3.21 silently runs on CPUs it does not know): paramtree "
                  f"{fmt_time(pa)} ({tokens / pa:,.0f} tokens/s), PyTorch {fmt_time(pb)} "
                  f"({tokens / pb:,.0f} tokens/s): **{pb / pa:.2f}x**{lt}. paramtree's float32 products "
                  "go through oneDNN, which generates its kernels for the CPU it finds."]
    gemm = [k for k in rounds[0] if k.startswith("sgemm/")]
    if gemm:
        rates = {k: statistics.median(r[k]["gflops"] for r in rounds) for k in gemm}
        rate = statistics.median(rates.values())
        shapes = ", ".join(f"{k.split('/', 1)[1]}: {v:.0f}" for k, v in rates.items())
        flops = step_matmul_flops()
        roof = flops / (rate * 1e9)
        lines += ["",
                  "Roofline of the step: its matrix products are "
                  f"{flops / 1e9:.2f} GFLOP (forward, and both gradients backward). At the matmul "
                  f"library's {rate:.0f} GFLOP/s at the linear layers' shapes "
                  f"({shapes}) they would take {roof * 1e3:.1f} ms, {100 * roof / a:.0f}% of the step."]
        if "lm_products/16x64" in rounds[0]:
            measured = ours("lm_products/16x64")
            got = statistics.median(r["lm_products/16x64"]["gflops"] for r in rounds)
            lines += ["",
                      "Measured instead of estimated (`lm_products/16x64`): every product of one "
                      "step, at its own shape (the attention heads' [64, 32] x [32, 64] ones "
                      "included) and as often as the step runs it, issued back to back through "
                      "the same library with nothing else (contiguous operands): "
                      f"{fmt_time(measured)} at {got:.0f} GFLOP/s, so **{100 * measured / a:.0f}% "
                      "of the step** runs at matmul speed (target ≥ 60%)."]
    tape = ours("tape/forward_backward") - ours("tape/untraced")
    lines += ["",
              f"The tape costs the difference between the first two rows per recorded operation: "
              f"{figure('tape.per_op', fmt_time(tape))}. "
              "`pt::linear` multiplies by the transposed weight through the library's transpose flag "
              "and folds the bias into the product, forward and backward, so no weight is ever copied.",
              ""]
    return lines


def checkpoint_section(bench):
    rate = lambda name: bench[name]["bytes_per_second"] / 2**20
    cp = rate("checkpoint/cp_read_write_fsync")
    rows = [("checkpoint/save", "save (temp file, write, fsync, rename)"),
            ("checkpoint/load_and_read", "load against the target (read into memory: the default) and read every byte"),
            ("checkpoint/load_map_and_read", "the same with `load_memory::map` (mmap, zero-copy)")]
    lines = ["## Checkpoints", "",
             "A tree of 64 float32 arrays of 4 MiB (256 MiB), saved to and loaded from this machine's disk, "
             "against a plain copy of the same bytes: `read()` the whole file, `write()` it to a new file, "
             "`fsync` (what `cp` followed by `sync` does). Medians of 3. Target: at least 70% of the copy's "
             "throughput.", "",
             "| operation | throughput | of the copy's |", "|---|---|---|",
             f"| copy: read + write + fsync | {cp:,.0f} MiB/s | 100% |"]
    for key, label in rows:
        lines.append(f"| {label} | {rate(key):,.0f} MiB/s | {100 * rate(key) / cp:.0f}% |")
    return lines + ["", "Saving writes each tensor's bytes straight from the array (no staging copy). "
                    "The default load reads the file into one buffer and views aligned tensors in it (one "
                    "copy, safe against later changes to the file); the mapped load views the page cache "
                    "itself (no copy, but see docs/checkpoints.md on files changed in place).", ""] + (
        [f"`load_tree` of a tied autoencoder (four encoder weights [1024, 512], each decoder weight "
         f"the transpose of its encoder's; 8 MiB, read from the page cache): "
         f"{bench['checkpoint/load_tree_tied']['real_time']:,.0f} µs. The decoder puts each tie's "
         "placeholder in directly and checks it from shapes (1.84 ms before, when it built every "
         "transposed copy, wrote it in and pruned it again; 3 interleaved rounds).", ""]
        if "checkpoint/load_tree_tied" in bench else []) + (
        [f"The header alone, on tmpfs (`/dev/shm`, where fsync is free): a 48-block transformer of "
         f"1,248 small leaves whose blocks 1-47 tie their attention to block 0's (47 ties). `save`: "
         f"{bench['checkpoint/save_tied_structure']['real_time']:,.0f} µs, `load_tree`: "
         f"{bench['checkpoint/load_tree_tied_structure']['real_time']:,.0f} µs. `save` walks the tree "
         "once and writes each tie once (structure format 3).", ""]
        if "checkpoint/save_tied_structure" in bench else [])


def round_texts(folder, stem):
    """The outputs of a measured program's interleaved rounds: the text of each
    `{stem}_{n}.txt` in `folder` that exists, in round order."""
    for n in range(1, 10):
        path = os.path.join(folder, f"{stem}_{n}.txt")
        if os.path.exists(path):
            yield open(path).read()


def median_or_nan(v):
    return sorted(v)[len(v) // 2] if v else float("nan")


def distributed_section(folder):
    """Data parallelism: the demo's throughput at 1 and 2 processes, the all-reduce against a
    ping-pong, bytes with the tie and without, optimizer-state bytes per process."""
    import re
    def runs(tag):
        tps, pct, ms = [], [], []
        for text in round_texts(folder, f"ddp_{tag}"):
            steps = re.findall(r"^step \d+/\d+ .*?([0-9.]+) tokens/s", text, re.M)
            if steps:
                tps.append(float(steps[-1]))
            m = re.search(r"gradient all-reduce: \d+ bytes per step, ([0-9.]+) ms per step \(([0-9.]+)%", text)
            if m:
                ms.append(float(m.group(1)))
                pct.append(float(m.group(2)))
        return median_or_nan(tps), median_or_nan(ms), median_or_nan(pct), len(tps)
    one, _, _, n1 = runs("1x1")
    two, two_ms, two_pct, n2 = runs("2x1")
    threads, _, _, _ = runs("1x2")
    if not n1 or not n2:
        return []
    # The ceiling: per round, the two independent half-batch processes' tokens/s added.
    free = []
    for n in range(1, 10):
        rates = []
        for core in (0, 1):
            path = os.path.join(folder, f"ddp_free{core}_{n}.txt")
            if os.path.exists(path):
                steps = re.findall(r"^step \d+/\d+ .*?([0-9.]+) tokens/s", open(path).read(), re.M)
                if steps:
                    rates.append(float(steps[-1]))
        if len(rates) == 2:
            free.append(sum(rates))
    ceiling = sorted(free)[len(free) // 2] if free else None
    lines = ["<!-- distributed -->", "## Data parallel (MPI)", "",
             f"The flagship demo (width 128, 2 blocks, global batch 16 x 64 tokens, AdamW, 150 steps) "
             f"on this machine's cores, {n1} interleaved rounds, medians. `scripts/demo --ranks 2` runs "
             "the second row: two processes under `mpirun`, one compute thread each, every step's "
             "gradient averaged with `allreduce_mean` over the pruned tree.", "",
             "| configuration | tokens/s | vs 1 process, 1 thread |", "|---|---:|---:|",
             f"| 1 process, 1 thread | {one:,.0f} | 1.00x |",
             f"| 2 processes, 1 thread each | {two:,.0f} | **{two / one:.2f}x** |",
             f"| 1 process, 2 threads | {threads:,.0f} | {threads / one:.2f}x |"]
    if ceiling:
        lines += [f"| ceiling: 2 independent processes, half the batch each, nothing exchanged | "
                  f"{ceiling:,.0f} | {ceiling / one:.2f}x |"]
    step_ms = 1e3 * 16 * 64 / two
    lines += ["", f"At 2 processes a step takes {step_ms:.1f} ms, and the all-reduce inside it "
              f"{two_ms:.2f} ms ({two_pct:.1f}% of the training time): that includes waiting for the "
              "slower process, whose step varies from step to step on a shared machine.", ""]
    path = os.path.join(folder, "distributed.json")
    if os.path.exists(path):
        d = json.load(open(path))
        lines += ["| all-reduce of the demo's gradient (2 processes) | bytes | time (median of 41) |",
                  "|---|---:|---:|",
                  f"| tied model (`allreduce_mean`, one 25 MiB bucket) | {d['tied_bytes']:,} | {figure('allreduce.tied', ms(d['allreduce_tied_s']))} |",
                  f"| same, 256 KiB buckets | {d['tied_bytes']:,} | {d['allreduce_small_buckets_s'] * 1e3:.3f} ms |",
                  f"| untied twin (the head's weight a leaf of its own) | {d['untied_bytes']:,} | {d['allreduce_untied_s'] * 1e3:.3f} ms |",
                  f"| MPI ping-pong of the tied bytes (one round trip) | {d['tied_bytes']:,} | {figure('allreduce.ping_pong', ms(d['ping_pong_s']))} |",
                  "",
                  f"Communication alone (the demo's 256 KiB buckets, both processes ready) is "
                  f"{d['allreduce_small_buckets_s'] * 1e3:.3f} ms, {100 * d['allreduce_small_buckets_s'] * 1e3 / step_ms:.1f}% "
                  f"of the {step_ms:.1f} ms step.", "",
                  f"The tie saves {d['untied_bytes'] - d['tied_bytes']:,} bytes on the wire per step: the "
                  "tied weight is one leaf of the pruned gradient, sent once. Optimizer state (AdamW's two "
                  f"moments) per process: {d['optimizer_state_bytes']:,} bytes, twice the parameters' "
                  f"{d['parameter_bytes']:,}, on every process.", ""]
        if "reduce_scatter_s" in d:
            lines += ["Sharded (ZeRO-2) step on the same model: each process receives only its leaves' "
                      "mean gradient and keeps only their moments; the updated leaves are then gathered.", "",
                      "| sharded step, 2 processes | bytes | time (median of 41) |", "|---|---:|---:|",
                      f"| `reduce_scatter_mean` (gradient to owners) | {d['reduce_scatter_bytes']:,} | {d['reduce_scatter_s'] * 1e3:.3f} ms |",
                      f"| `all_gather` (updated parameters from owners) | {d['all_gather_bytes']:,} | {d['all_gather_s'] * 1e3:.3f} ms |",
                      f"| both, against `allreduce_mean` above | | {(d['reduce_scatter_s'] + d['all_gather_s']) * 1e3:.3f} vs {d['allreduce_tied_s'] * 1e3:.3f} ms |",
                      "",
                      f"AdamW's moments on the most loaded process: {d['sharded_state_bytes_max']:,} bytes "
                      f"sharded against {d['optimizer_state_bytes']:,} whole "
                      f"({d['sharded_state_bytes_max'] / d['optimizer_state_bytes']:.2f} of it).", ""]
    return lines + ["<!-- /distributed -->", ""]


def remat_section(folder):
    """Rematerialisation: the demo's ms per step and peak memory with and without --remat,
    with the buffer cache and with glibc's heap alone."""
    import re
    def runs(mode, cache):
        ms, mib = [], []
        for text in round_texts(folder, f"remat_{mode}_cache{cache}"):
            m = re.search(r"([0-9.]+) ms per step; peak memory ([0-9.]+) MiB", text)
            if m:
                ms.append(float(m.group(1)))
                mib.append(float(m.group(2)))
        return median_or_nan(ms), median_or_nan(mib), len(ms)
    plain, remat = runs("plain", 1), runs("remat", 1)
    plain_glibc, remat_glibc = runs("plain", 0), runs("remat", 0)
    if not plain[2] or not remat[2]:
        return []
    return ["<!-- remat -->", "## Rematerialisation", "",
            "The flagship demo at context 256 with six blocks (width 128, batch 16, one thread, 8 "
            f"steps), {plain[2]} interleaved rounds, medians: `--remat` rematerialises every block "
            "(`pt::remat`: its activations are recomputed in the backward pass instead of kept). "
            "Peak memory is the process's high-water mark (`ru_maxrss`). The second pair of rows "
            "turns paramtree's buffer cache off (`PARAMTREE_BUFFER_CACHE=0`: every buffer from "
            "glibc's heap).", "",
            "| configuration | ms per step | peak memory |", "|---|---:|---:|",
            f"| plain | {plain[0]:,.0f} | {plain[1]:,.0f} MiB |",
            f"| `--remat` | {remat[0]:,.0f} ({remat[0] / plain[0]:.2f}x) | **{remat[1]:,.0f} MiB** ({remat[1] / plain[1]:.2f}x) |",
            f"| plain, glibc heap only | {plain_glibc[0]:,.0f} | {plain_glibc[1]:,.0f} MiB |",
            f"| `--remat`, glibc heap only | {remat_glibc[0]:,.0f} | {remat_glibc[1]:,.0f} MiB |", "",
            "Gradients are bitwise identical either way (tested). Without the cache, glibc keeps "
            "the freed activations in its heap, and rematerialisation saves little of its peak.",
            "<!-- /remat -->", ""]


def precision_section(folder):
    """bfloat16 products against float32: the demo's ms per step (medians over the rounds),
    its final held-out loss, and both loss curves drawn to docs/images/precision_loss.svg."""
    import re
    def runs(p):
        ms, final, text = [], [], ""
        for text in round_texts(folder, f"precision_{p}"):
            m = re.search(r"([0-9.]+) ms per step", text)
            f = re.search(r"held-out loss after training: ([0-9.]+)", text)
            if m and f:
                ms.append(float(m.group(1)))
                final.append(float(f.group(1)))
        return median_or_nan(ms), final, len(ms), text if ms else ""
    f32, bf16 = runs("float32"), runs("bfloat16")
    if not f32[2] or not bf16[2]:
        return []
    bf16_on = "training products in bfloat16" in bf16[3]
    image = os.path.join(ROOT, "docs", "images", "precision_loss.svg")
    curves = [os.path.join(folder, f"precision_{p}.csv") for p in ("float32", "bfloat16")]
    drawn = False
    if all(os.path.exists(c) for c in curves) and shutil.which("gnuplot"):
        script = "\n".join([
            "set terminal svg size 720,400 dynamic font 'sans,11'",
            f"set output '{image}'", "set datafile separator ','", "set key top right",
            "set xlabel 'step'", "set ylabel 'loss (nats per character)'", "set grid",
            f"plot '{curves[0]}' using 1:2 every ::1 with lines lw 1 lc rgb '#9ecae1' title 'float32 train', "
            f"'{curves[1]}' using 1:2 every ::1 with lines lw 1 lc rgb '#fdae6b' title 'bfloat16 train', "
            f"'{curves[0]}' using 1:3 every ::0 with linespoints lw 2 lc rgb '#08519c' title 'float32 held-out', "
            f"'{curves[1]}' using 1:3 every ::0 with linespoints lw 2 lc rgb '#d94801' title 'bfloat16 held-out'"])
        drawn = subprocess.run(["gnuplot"], input=script, text=True).returncode == 0
    lines = ["<!-- precision -->", "## bfloat16 products", "",
             f"The demo's default run (width 128, 2 blocks, batch 16 x 64, AdamW, 1,000 steps, one "
             f"thread), `--precision float32` against `--precision bfloat16` (factors of every "
             f"product rounded to bfloat16 on the CPU's matrix units, float32 accumulation, "
             f"weights and optimizer state), {f32[2]} interleaved rounds, medians. ms per step "
             f"include the held-out evaluations (in float32) every 100 steps.", ""]
    if not bf16_on:
        lines += ["**This CPU has no bfloat16 matrix instructions oneDNN can use: the bfloat16 "
                  "runs fell back to float32.**", ""]
    lines += ["| precision | ms per step | final held-out loss |", "|---|---:|---:|",
              f"| float32 | {f32[0]:.1f} | {f32[1][0]:.4f} |",
              f"| bfloat16 | {bf16[0]:.1f} ({figure('precision.speedup', f'{f32[0] / bf16[0]:.2f}x')} faster) "
              f"| {bf16[1][0]:.4f} "
              f"({figure('precision.loss_change', f'{100 * (bf16[1][0] - f32[1][0]) / f32[1][0]:+.2f}%')}) |", ""]
    if drawn:
        lines += ["![loss curves, float32 and bfloat16](images/precision_loss.svg)", ""]
    return lines + ["<!-- /precision -->", ""]


def demo_section(folder):
    """The demo as scripts/demo runs it (default options, every core), with OpenBLAS's own
    core and with OPENBLAS_CORETYPE=Prescott, against the build of the commit issue 11 was
    measured on (57b978e) when scripts/bench could build it: interleaved rounds, medians."""
    import re
    def runs(version, core):
        out = []
        for text in round_texts(folder, f"demo_{version}_{core}"):
            found = re.findall(r"([0-9]+) tokens/s", text)
            if found:
                out.append(float(found[-1]))
        return statistics.median(out) if out else None, len(out)
    new_default, rounds = runs("new", "default")
    new_prescott, _ = runs("new", "prescott")
    if not new_default or not new_prescott:
        return []
    old_default, old_rounds = runs("old", "default")
    old_prescott, _ = runs("old", "prescott")
    lines = ["<!-- demo -->", "## The demo with its defaults", "",
             "`scripts/demo`'s program with its default options (batch 16 x 64, dim 128, 2 blocks, "
             f"every core this machine has, 150 steps), {rounds} interleaved rounds, medians of the "
             "tokens/s each run prints at its end. *Prescott*: OpenBLAS forced onto its generic "
             "kernels (`OPENBLAS_CORETYPE=Prescott`), what Debian's OpenBLAS 0.3.21 silently runs on "
             "a CPU it does not know.", "",
             "| build | OpenBLAS's own core | Prescott |", "|---|---:|---:|"]
    if old_default and old_prescott:
        lines.append(f"| 57b978e (when issue 11 was filed; its scripts/demo's -O2 build) | "
                     f"{old_default:,.0f} | {old_prescott:,.0f} |")
        lines.append(f"| this commit | {new_default:,.0f} (**{new_default / old_default:.2f}x**) | "
                     f"{new_prescott:,.0f} (**{new_prescott / old_prescott:.2f}x**) |")
        lines += ["", "Targets: at least 3x where OpenBLAS falls back to a generic core, at least "
                  "1.5x on any machine."]
    else:
        lines.append(f"| this commit | {new_default:,.0f} | {new_prescott:,.0f} |")
        lines += ["", "(The build of 57b978e was not available: the clone lacks that commit.)"]
    return lines + ["<!-- /demo -->", ""]


def contention_section(folder):
    """Threads on a shared machine: ms per step of the demo and of siamese_digits with the
    default thread count, one thread and every core, idle and beside a CPU-bound process."""
    import re
    def ms(program, load, threads):
        out, why = [], ""
        for text in round_texts(folder, f"contention_{program}_{load}_{threads}"):
            m = re.search(r"([0-9.]+) ms per step", text)
            if m:
                out.append(float(m.group(1)))
            w = re.search(r"threads? \(([^)]*)\)", text)
            if w and threads == "default":
                why = w.group(1)
        return median_or_nan(out), len(out), why
    rows = []
    for program, name in (("demo", "demo (char_lm, 150 steps)"), ("siamese", "siamese_digits (300 steps)")):
        for load in ("idle", "busy"):
            d, one, every = ms(program, load, "default"), ms(program, load, "1"), ms(program, load, "all")
            if not d[1] or not one[1] or not every[1]:
                continue
            best = min(one[0], every[0])
            rows.append(f"| {name} | {load} | {d[0]:.2f} | {one[0]:.2f} | {every[0]:.2f} | "
                        f"**{best / d[0]:.2f}** | {d[2] or '-'} |")
    if not rows:
        return []
    return ["<!-- contention -->", "## Threads on a shared machine", "",
            f"Each program with paramtree's default thread count, one thread "
            f"(`PARAMTREE_NUM_THREADS=1`) and every core ({os.cpu_count()}), on an idle machine and "
            "beside one CPU-bound process (`yes > /dev/null`), interleaved over three rounds; "
            "medians of the ms per step each run prints. *default vs best* is the better of one "
            "thread and every core divided by the default (target: at least 0.9). The last column "
            "is the reason the default gave for its thread count (the runs of the siamese example "
            "print none).", "",
            f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d')} on {cpu_identity()}; "
            "before this policy the default was every core.", "",
            "| program | machine | default (ms) | 1 thread | every core | default vs best | default's reason |",
            "|---|---|---:|---:|---:|---:|---|"] + rows + ["<!-- /contention -->", ""]


def scale_section(folder):
    """Checkpoint and tie operations at 1k to 1M tensors or tied positions: microseconds per
    item, against the target of 2 (issue 31)."""
    path = os.path.join(folder, "scale.json")
    if not os.path.exists(path):
        return []
    rows = json.load(open(path))
    sizes = sorted({r["n"] for r in rows})
    ops = []
    for r in rows:
        key = (r["kind"], r["op"].replace(" refused", ""))
        if key not in ops:
            ops.append(key)
    def cell(kind, op, n):
        for r in rows:
            if r["kind"] == kind and r["n"] == n and r["op"] == op:
                return f"{1e6 * r['seconds'] / n:.2f}"
            if r["kind"] == kind and r["n"] == n and r["op"] == op + " refused":
                return "refused"
        return "-"
    lines = ["<!-- scale -->", "## Checkpoints and ties at scale", "",
             "Microseconds per tied position (*ties*: n positions tied to one source in a list) or "
             "per tensor (*tensors*: a dict of n one-element tensors), median of three runs (one "
             "at 1M), `bench/bench_scale`. Target: at most 2 µs each at every size. *refused*: "
             "1M tensors need a header past the 100 MB loaders accept (about 121 bytes a tensor), "
             "so `save` refuses before writing.", "",
             f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d')} on {cpu_identity()}.", "",
             "| what | operation | " + " | ".join(f"{n:,}" for n in sizes) + " |",
             "|---|---|" + "---:|" * len(sizes)]
    for kind, op in ops:
        lines.append(f"| {kind} | `{op}` | " + " | ".join(cell(kind, op, n) for n in sizes) + " |")
    return lines + ["<!-- /scale -->", ""]


SECTIONS = {"distributed": distributed_section, "remat": remat_section,
            "precision": precision_section, "demo": demo_section,
            "contention": contention_section, "scale": scale_section}


def main():
    if sys.argv[1] == "--only":
        # Replaces one marked section of an existing report, leaving the rest as measured.
        name, folder, target = sys.argv[2], sys.argv[3], sys.argv[4]
        section = "\n".join(SECTIONS[name](folder))
        text = open(target).read() if os.path.exists(target) else "# Benchmarks\n\n"
        start, end = text.find(f"<!-- {name} -->"), text.find(f"<!-- /{name} -->")
        if start >= 0 and end >= 0:
            text = text[:start] + section + text[end + len(f"<!-- /{name} -->") + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        open(target, "w").write(text)
        return
    folder, target = sys.argv[1], sys.argv[2]
    sections = []
    context = None
    path = os.path.join(folder, "trees.json")
    if os.path.exists(path):
        context, bench = medians(path)
        sections += tree_section(bench)
    path = os.path.join(folder, "shared.json")
    if os.path.exists(path):
        _, bench = medians(path)
        sections += shared_section(bench)
    path = os.path.join(folder, "checkpoint.json")
    if os.path.exists(path):
        _, bench = medians(path)
        sections += checkpoint_section(bench)
    def runs(prefix, torch_prefix):
        ours, theirs = [], []
        if prefix is None:
            for n in range(1, 10):
                tpath = os.path.join(folder, f"{torch_prefix}_{n}.json")
                if os.path.exists(tpath):
                    theirs.append(json.load(open(tpath)))
            return theirs
        for n in range(1, 10):
            path = os.path.join(folder, f"{prefix}_{n}.json")
            if os.path.exists(path):
                ctx, bench = medians(path)
                bench["__context__"] = ctx
                ours.append(bench)
            tpath = os.path.join(folder, f"{torch_prefix}_{n}.json")
            if os.path.exists(tpath):
                theirs.append(json.load(open(tpath)))
        return ours, theirs

    rounds, torch_rounds = runs("autodiff", "torch")
    if rounds:
        prescott, prescott_torch = runs("prescott_autodiff", "prescott_torch")
        sections += autodiff_section(rounds, torch_rounds, prescott, prescott_torch,
                                     runs(None, "libtorch"), runs(None, "prescott_libtorch"))
    sections += demo_section(folder)
    sections += distributed_section(folder)
    sections += remat_section(folder)
    sections += precision_section(folder)
    sections += contention_section(folder)
    sections += scale_section(folder)
    head = ["# Benchmarks", "",
            "Written by `scripts/bench` (do not edit by hand). Release build (`-O3`), Google Benchmark "
            "(Debian's libbenchmark, which reports itself as a debug build: that concerns the harness, "
            "not the code measured), single thread, medians of 5 repetitions.", "",
            f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- cpu: {cpu_model()} ({os.cpu_count()} cores visible)",
            f"- compiler: {subprocess.run(['c++', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}",
            ""]
    if context:
        head.insert(-1, f"- load average at start: {context.get('load_avg', ['?'])}")
    open(target, "w").write("\n".join(head + sections))


if __name__ == "__main__":
    main()
