#!/usr/bin/python3
"""Convolution, pooling and batch norm against PyTorch: forward values and the gradients of sum(y * r) for
random inputs, computed by paramtree (the ops_interop tool) and by torch in float64.

Usage: ops_interop.py PATH/TO/ops_interop   (skips, with a message, without python3-torch)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

from safetensors_np import read_st, write_st

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("ops interop skipped: python3-torch is not installed")
    sys.exit(0)

TOOL = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="pt-ops-")
rng = np.random.default_rng(0)


def compare(name, op, args, inputs, torch_fn):
    """Runs `op` in paramtree and `torch_fn` in torch on `inputs`; checks y and every grad."""
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    y = torch_fn(**leaves)
    r = rng.uniform(0.5, 1.5, size=tuple(y.shape))
    (y * torch.tensor(r)).sum().backward()
    src, dst = os.path.join(TMP, "in.safetensors"), os.path.join(TMP, "out.safetensors")
    write_st(src, [*inputs.items(), ("r", r)])
    result = subprocess.run([TOOL, op, src, dst, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED {name}: {result.stderr.strip()}")
    ours, _ = read_st(dst)
    checks = [("y", y.detach().numpy())] + [("d_" + k, t.grad.numpy()) for k, t in leaves.items()]
    for key, want in checks:
        got = ours[key]
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-10, atol=1e-10):
            err = np.abs(got - want).max() if got.shape == want.shape else "shape"
            sys.exit(f"FAILED {name}: {key} differs from PyTorch ({got.shape} vs {want.shape}, "
                     f"max error {err})")
    print(f"ok {name}")


def normal(*shape):
    return rng.standard_normal(shape)


# conv2d: stride, padding, dilation, groups (dense, grouped, depthwise), with and without bias.
for (n, c, h, w), (o, kh, kw), stride, pad, dil, groups, bias in [
        ((2, 3, 9, 8), (4, 3, 3), (1, 1), (0, 0), (1, 1), 1, True),
        ((2, 1, 12, 12), (6, 5, 5), (1, 1), (2, 2), (1, 1), 1, True),       # LeNet's first layer
        ((3, 4, 10, 11), (6, 3, 2), (2, 3), (1, 0), (1, 1), 2, True),
        ((2, 4, 9, 9), (4, 3, 3), (1, 1), (1, 1), (2, 2), 4, False),        # depthwise, dilated
        ((1, 2, 7, 5), (3, 2, 2), (3, 2), (1, 1), (2, 1), 1, False)]:
    inputs = {"x": normal(n, c, h, w), "w": normal(o, c // groups, kh, kw)}
    if bias:
        inputs["b"] = normal(o)
    compare(f"conv2d x{[n, c, h, w]} w{[o, c // groups, kh, kw]} stride {stride} pad {pad} "
            f"dilation {dil} groups {groups}", "conv2d",
            [*stride, *pad, *dil, groups], inputs,
            lambda x, w, b=None: F.conv2d(x, w, b, stride, pad, dil, groups))

# conv1d
for stride, pad, dil, groups in [(1, 1, 1, 1), (2, 0, 2, 2)]:
    inputs = {"x": normal(2, 4, 17), "w": normal(6, 4 // groups, 3), "b": normal(6)}
    compare(f"conv1d stride {stride} pad {pad} dilation {dil} groups {groups}", "conv1d",
            [stride, pad, dil, groups], inputs,
            lambda x, w, b: F.conv1d(x, w, b, stride, pad, dil, groups))

# pooling: overlapping windows, padding, odd sizes
for kernel, stride, pad in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                            ((3, 2), (1, 2), (1, 0))]:
    x = normal(2, 3, 9, 8)
    compare(f"max_pool2d kernel {kernel} stride {stride} pad {pad}", "max_pool2d",
            [*kernel, *stride, *pad], {"x": x},
            lambda x: F.max_pool2d(x, kernel, stride, pad))
    compare(f"avg_pool2d kernel {kernel} stride {stride} pad {pad}", "avg_pool2d",
            [*kernel, *stride, *pad], {"x": x},
            lambda x: F.avg_pool2d(x, kernel, stride, pad))
# batch norm in training mode: output, gradients, and the batch statistics PyTorch's running
# average takes in (momentum 1: the running statistics become the batch's, unbiased variance).
for shape in [(6, 3), (4, 3, 5, 5)]:
    c = shape[1]
    running_mean, running_var = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    compare(f"batch_norm {list(shape)}", "batch_norm", [],
            {"x": normal(*shape), "w": normal(c), "b": normal(c)},
            lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b, True, 1.0, 1e-5))
    ours, _ = read_st(os.path.join(TMP, "out.safetensors"))
    for key, want in [("mean", running_mean), ("variance", running_var)]:
        if not np.allclose(ours[key], want.numpy(), rtol=1e-10, atol=1e-10):
            sys.exit(f"FAILED batch_norm {list(shape)}: {key} differs from PyTorch's running update")
print("all operations match PyTorch")
