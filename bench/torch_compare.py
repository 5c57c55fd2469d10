#!/usr/bin/python3
"""The models of bench/models.hpp in PyTorch eager, timed the same way (forward + backward,
single thread). Run by scripts/bench with OPENBLAS_NUM_THREADS=1 so that both sides use the
same BLAS on one core; writes a JSON file of median seconds per iteration.

Usage: torch_compare.py OUT.json [NAME...]   (only the named benchmarks, e.g. lm_step/16x64)
"""
import ctypes
import json
import math
import statistics
import sys
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)


def timed(fn, min_time=0.3, repetitions=5):
    """Median over `repetitions` runs of the mean time per call within ~min_time."""
    for _ in range(3):
        fn()
    results = []
    for _ in range(repetitions):
        n, elapsed = 0, 0.0
        start = time.perf_counter()
        while elapsed < min_time:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
        results.append(elapsed / n)
    return statistics.median(results)


def mlp(batch, width, depth=3):
    layers = [torch.nn.Linear(width, width) for _ in range(depth)]  # PyTorch's default init
    x = torch.randn(batch, width)
    y = torch.randn(batch, width)

    def step():
        for layer in layers:
            layer.zero_grad(set_to_none=True)
        h = x
        for i, layer in enumerate(layers):
            h = layer(h)
            if i + 1 < len(layers):
                h = torch.relu(h)
        loss = ((h - y) * (h - y)).mean()
        loss.backward()
        return loss

    return step


def attention(b=4, t=64, d=256, heads=4):
    norm = torch.nn.LayerNorm(d)
    q, k, v, o = (torch.nn.Linear(d, d) for _ in range(4))
    mods = [norm, q, k, v, o]
    x = torch.randn(b, t, d)
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    dh = d // heads
    neg = torch.tensor(-1e9)

    def split(z):
        return z.reshape(b, t, heads, dh).permute(0, 2, 1, 3)

    def step():
        for m in mods:
            m.zero_grad(set_to_none=True)
        h = norm(x)
        s = split(q(h)) @ split(k(h)).transpose(-1, -2) * (1.0 / math.sqrt(dh))
        s = torch.where(mask, s, neg)
        a = torch.softmax(s, dim=-1) @ split(v(h))
        y = x + o(a.permute(0, 2, 1, 3).reshape(b, t, d))
        loss = (y * y).mean()
        loss.backward()
        return loss

    return step


def lm_step(vocab=76, context=64, dim=128, layers=2, heads=4, batch=16):
    """The flagship demo's model (docs/examples/gpt.hpp): embedding tied to the output
    projection, pre-norm blocks with GELU (tanh), AdamW with clipping; one training step."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
            self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim) for _ in range(4))
            self.fc1, self.fc2 = torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)
            self.mask = torch.tril(torch.ones(context, context, dtype=torch.bool))

        def forward(self, x):
            b, t, d = x.shape
            dh = d // heads

            def split(z):
                return z.reshape(b, t, heads, dh).permute(0, 2, 1, 3)

            h = self.norm1(x)
            s = split(self.q(h)) @ split(self.k(h)).transpose(-1, -2) * (1.0 / math.sqrt(dh))
            s = torch.where(self.mask[:t, :t], s, torch.tensor(-1e9))
            a = (torch.softmax(s, dim=-1) @ split(self.v(h))).permute(0, 2, 1, 3).reshape(b, t, d)
            x = x + self.o(a)
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x)), approximate="tanh"))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.pos = torch.nn.Embedding(vocab, dim), torch.nn.Embedding(context, dim)
            torch.nn.init.normal_(self.embed.weight, std=0.02)
            torch.nn.init.normal_(self.pos.weight, std=0.02)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(layers))
            self.norm = torch.nn.LayerNorm(dim)
            self.head = torch.nn.Linear(dim, vocab)
            self.head.weight = self.embed.weight  # the tie

        def forward(self, x):
            h = self.embed(x) + self.pos(torch.arange(x.shape[1]))
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.norm(h))

    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.99), eps=1e-8,
                            weight_decay=0.01)
    x = torch.randint(0, vocab, (batch, context))
    y = torch.randint(0, vocab, (batch, context))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def conv():
    """LeNet's second convolution with ReLU and 2x2 max pooling: conv2d 6 -> 16, 5x5, on
    [64, 6, 14, 14]; forward + backward of mean(y^2)."""
    layer = torch.nn.Conv2d(6, 16, 5)
    x = torch.randn(64, 6, 14, 14)

    def step():
        layer.zero_grad(set_to_none=True)
        y = torch.nn.functional.max_pool2d(torch.relu(layer(x)), 2)
        loss = (y * y).mean()
        loss.backward()
        return loss

    return step


def tape_chain(ops=1000):
    x = torch.ones(1, requires_grad=True)

    def forward():
        h = x
        for _ in range(ops // 2):
            h = h * 1.0001 + 0.0001
        return h.sum()

    def untraced():
        with torch.no_grad():
            forward()

    def grad():
        x.grad = None
        forward().backward()

    return untraced, grad


def main():
    out = sys.argv[1]
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
    except OSError:
        core = "unknown"
    wanted = set(sys.argv[2:])
    cases = {
        "tape/untraced": lambda: timed(tape_chain()[0]) / 1000,
        "tape/forward_backward": lambda: timed(tape_chain()[1]) / 1000,
        "mlp/64x512": lambda: timed(mlp(64, 512)),
        "mlp/8x32": lambda: timed(mlp(8, 32)),
        "attention/4x64x256": lambda: timed(attention()),
        "conv/lenet": lambda: timed(conv()),
        "lm_step/16x64": lambda: timed(lm_step(), min_time=1.0),
    }
    results = {
        "torch_version": torch.__version__,
        "openblas_core": core,
        "threads": torch.get_num_threads(),
        "seconds": {name: run() for name, run in cases.items() if not wanted or name in wanted},
    }
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
