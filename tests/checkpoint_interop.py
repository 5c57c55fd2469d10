#!/usr/bin/python3
"""Interoperability of paramtree's safetensors files with an independent implementation of the
format written here with numpy and the standard library only, and (where Debian's python3-torch
is installed) with a tied PyTorch model.

Usage: checkpoint_interop.py PATH/TO/checkpoint_interop   (the C++ side)
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

from safetensors_np import DTYPES, NUMPY, read_st, write_st  # noqa: F401

TOOL = sys.argv[1]
def known():
    return [("f32", np.array([[0, .5, 1], [1.5, 2, 2.5]], np.float32)),
            ("f64", np.array([1e-300, -2.5, math.pi], np.float64)),
            ("i32", np.array([-3, 7], np.int32)),
            ("i64", np.array([1 << 40, -1], np.int64)),
            ("bool", np.array([True, False, True])),
            ("scalar", np.array(4.25, np.float32)),
            ("empty", np.zeros((0, 3), np.float32))]


def run(*args):
    result = subprocess.run([TOOL, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}: {result.stderr.strip()}")
    print(result.stdout.strip())


def main():
    tmp = tempfile.mkdtemp(prefix="pt-interop-")
    # numpy writes, paramtree reads and checks every value.
    write_st(os.path.join(tmp, "from_python.safetensors"), known(), {"format": "np"})
    run("read-python", os.path.join(tmp, "from_python.safetensors"))
    # paramtree writes, numpy reads and checks every value.
    run("write", os.path.join(tmp, "from_paramtree.safetensors"))
    arrays, metadata = read_st(os.path.join(tmp, "from_paramtree.safetensors"))
    for name, want in known():
        got = arrays[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
    assert "paramtree.structure" in metadata and metadata["format"] == "paramtree"
    print("numpy round trip: ok")

    try:
        import torch
    except ImportError:
        print("PyTorch round trip skipped: python3-torch is not installed")
        return
    vocab, dim = 7, 3

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, dim)
            self.head = torch.nn.Linear(dim, vocab)
            self.head.weight = self.embed.weight  # tied, as PyTorch users write it

    model = LM()
    with torch.no_grad():
        model.embed.weight.copy_(torch.arange(vocab * dim, dtype=torch.float32).reshape(vocab, dim) / 100)
        model.head.bias.copy_(-torch.arange(vocab, dtype=torch.float32))
    state = model.state_dict()  # holds the tied weight under both names
    assert state["head.weight"].data_ptr() == state["embed.weight"].data_ptr()
    # Both names (a state_dict written tensor by tensor) and one name dropped (save_model).
    both = [(k, v.numpy()) for k, v in state.items()]
    dropped = [(k, v.numpy()) for k, v in state.items() if k != "head.weight"]
    write_st(os.path.join(tmp, "torch_both.safetensors"), both)
    write_st(os.path.join(tmp, "torch_dropped.safetensors"), dropped, {"head.weight": "embed.weight"})
    run("read-torch", os.path.join(tmp, "torch_both.safetensors"))
    run("read-torch", os.path.join(tmp, "torch_dropped.safetensors"))
    # paramtree writes the tied model once; PyTorch loads it and re-ties.
    run("write-torch", os.path.join(tmp, "for_torch.safetensors"))
    arrays, metadata = read_st(os.path.join(tmp, "for_torch.safetensors"))
    ties = json.loads(metadata["paramtree.ties"])
    assert ties == {"head.weight": {"source": "embed.weight", "transforms": [],
                                    "from": ".embed.weight"}}, ties
    fresh = LM()
    missing, unexpected = fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()},
                                                strict=False)
    assert missing == ["head.weight"] and not unexpected, (missing, unexpected)
    assert fresh.head.weight is fresh.embed.weight  # the tie survives in PyTorch too
    x = torch.tensor([1, 4, 6])
    assert torch.equal(fresh.head(fresh.embed(x)), model.head(model.embed(x)))
    print("PyTorch round trip: ok (tied weight stored once, restored on both sides)")


if __name__ == "__main__":
    main()
