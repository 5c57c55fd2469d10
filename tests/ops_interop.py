#!/usr/bin/python3
"""Convolution, pooling and batch norm against PyTorch: forward values and the gradients of sum(y * r) for
random inputs, computed by paramtree (the ops_interop tool) and by torch in float64. Then second
order: Hessian-vector products (pt::hvp against torch's double backward, create_graph=True) and a
WGAN-GP gradient penalty, whose gradient goes through the critic's own gradient.

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


def compare(name, op, args, inputs, torch_fn, hvp=False):
    """Runs `op` in paramtree and `torch_fn` in torch on `inputs`; checks y and every grad
    (and, with `hvp`, the Hessian of sum(y * r) times a random direction v)."""
    leaves = {k: torch.tensor(v, requires_grad=v.dtype == np.float64) for k, v in inputs.items()}
    wrt = {k: t for k, t in leaves.items() if t.requires_grad}
    y = torch_fn(**leaves)
    r = rng.uniform(0.5, 1.5, size=tuple(y.shape))
    loss = (y * torch.tensor(r)).sum()
    grads = torch.autograd.grad(loss, list(wrt.values()), create_graph=hvp)
    directions = {k: rng.standard_normal(t.shape) for k, t in wrt.items()} if hvp else {}
    checks = [("y", y.detach().numpy())] + [("d_" + k, g.detach().numpy())
                                            for k, g in zip(wrt, grads)]
    if hvp:
        dot = sum((g * torch.tensor(directions[k])).sum() for k, g in zip(wrt, grads))
        hv = torch.autograd.grad(dot, list(wrt.values()), allow_unused=True)
        checks += [("hv_" + k, (h if h is not None else torch.zeros_like(wrt[k])).numpy())
                   for k, h in zip(wrt, hv)]
    src, dst = os.path.join(TMP, "in.safetensors"), os.path.join(TMP, "out.safetensors")
    write_st(src, [*inputs.items(), ("r", r), *(("v_" + k, v) for k, v in directions.items())])
    result = subprocess.run([TOOL, op, src, dst, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED {name}: {result.stderr.strip()}")
    ours, _ = read_st(dst)
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

# Second order: pt::hvp against torch's double backward.
def attention(x, k, vv, heads=2):
    b, t, d = x.shape
    split = lambda a: a.reshape(b, t, heads, d // heads).transpose(1, 2)
    scores = split(x) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    p = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    return (p @ split(vv)).transpose(1, 2).reshape(b, t, d)


positive = lambda *shape: rng.uniform(0.5, 2.0, size=shape)
for name, inputs, fn in [
        ("tanh", {"x": normal(3, 4)}, torch.tanh),
        ("sigmoid", {"x": normal(3, 4)}, torch.sigmoid),
        ("gelu", {"x": normal(3, 4)}, F.gelu),
        ("gelu_tanh", {"x": normal(3, 4)}, lambda x: F.gelu(x, approximate="tanh")),
        ("softmax", {"x": normal(3, 5)}, lambda x: torch.softmax(x, -1)),
        ("log_softmax", {"x": normal(4, 3)}, lambda x: torch.log_softmax(x, 0)),
        ("cross_entropy", {"x": normal(5, 4), "t": np.array([0, 3, 1, 1, 2], dtype=np.int64)},
         lambda x, t: F.cross_entropy(x, t)),
        ("layer_norm", {"x": normal(3, 6), "w": normal(6), "b": normal(6)},
         lambda x, w, b: F.layer_norm(x, (6,), w, b, 1e-5)),
        ("rms_norm", {"x": normal(3, 6), "w": normal(6)},
         lambda x, w: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w),
        ("mlp", {"x": normal(4, 3), "w": normal(5, 3), "b": normal(5), "w2": normal(2, 5)},
         lambda x, w, b, w2: F.linear(torch.tanh(F.linear(x, w, b)), w2)),
        ("linear_gelu", {"x": normal(4, 3), "w": normal(5, 3), "b": normal(5)},
         lambda x, w, b: F.gelu(F.linear(x, w, b))),
        ("linear_gelu_tanh", {"x": normal(2, 4, 3), "w": normal(5, 3), "b": normal(5)},
         lambda x, w, b: F.gelu(F.linear(x, w, b), approximate="tanh")),
        ("matmul", {"x": normal(2, 3, 4), "w": normal(4, 5)}, lambda x, w: x @ w),
        ("pow", {"x": positive(3, 4), "w": normal(3, 4)}, lambda x, w: torch.pow(x, w)),
        ("divide", {"x": normal(3, 4), "w": positive(3, 4)},
         lambda x, w: x / w + torch.exp(x) * torch.log(w)),
        ("attention", {"x": normal(2, 5, 4), "k": normal(2, 5, 4), "vv": normal(2, 5, 4)},
         attention)]:
    compare(f"hvp {name}", name, [], inputs, fn, hvp=True)


def gradient_penalty(x, w, b, w2):
    d = F.linear(torch.tanh(F.linear(x, w, b)), w2).sum()
    gx, = torch.autograd.grad(d, x, create_graph=True)
    return (torch.sqrt((gx * gx).sum(1) + 1e-12) - 1) ** 2


compare("WGAN-GP gradient penalty (double backward)", "gradient_penalty", [],
        {"x": normal(4, 3), "w": normal(5, 3), "b": normal(5), "w2": normal(1, 5)},
        gradient_penalty)

# A stateful block applied twice through a tie (one module called twice in one forward, as
# PyTorch writes a tie): after 3 SGD steps, parameters and BatchNorm's state agree.
def tied_batch_norm_train(steps=3):
    c = 4
    inputs = {"x": normal(16, c), "t": normal(16, 1), "w1": normal(c, c), "b1": normal(c),
              "g": rng.uniform(0.5, 1.5, size=c), "beta": normal(c), "w2": normal(1, c),
              "b2": normal(1)}
    lin1, bn, lin2 = torch.nn.Linear(c, c), torch.nn.BatchNorm1d(c), torch.nn.Linear(c, 1)
    model = torch.nn.Sequential(torch.nn.Sequential(lin1, bn, torch.nn.Tanh()),
                                torch.nn.Sequential(lin1, bn, torch.nn.Tanh()), lin2).double()
    with torch.no_grad():
        for param, name in [(lin1.weight, "w1"), (lin1.bias, "b1"), (bn.weight, "g"),
                            (bn.bias, "beta"), (lin2.weight, "w2"), (lin2.bias, "b2")]:
            param.copy_(torch.tensor(inputs[name]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)   # lists lin1 and bn once each
    x, t = torch.tensor(inputs["x"]), torch.tensor(inputs["t"])
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - t) ** 2).mean().backward()
        opt.step()
    src, dst = os.path.join(TMP, "in.safetensors"), os.path.join(TMP, "out.safetensors")
    write_st(src, list(inputs.items()))
    result = subprocess.run([TOOL, "tied_batch_norm_train", src, dst, str(steps)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED tied BatchNorm: {result.stderr.strip()}")
    ours, _ = read_st(dst)
    want = {"w1": lin1.weight, "b1": lin1.bias, "g": bn.weight, "beta": bn.bias,
            "w2": lin2.weight, "b2": lin2.bias, "running_mean": bn.running_mean,
            "running_var": bn.running_var,
            "num_batches_tracked": bn.num_batches_tracked.double()}
    for key, value in want.items():
        w = value.detach().numpy()
        if ours[key].shape != w.shape or not np.allclose(ours[key], w, rtol=1e-10, atol=1e-10):
            sys.exit(f"FAILED tied BatchNorm after {steps} steps: {key} differs from PyTorch "
                     f"({ours[key]} vs {w})")
    assert int(bn.num_batches_tracked) == 2 * steps
    print(f"ok tied BatchNorm, {steps} SGD steps (state and parameters)")


tied_batch_norm_train()
print("all operations match PyTorch")
