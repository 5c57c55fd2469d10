"""The `paramtree` command against files written here with an independent safetensors writer
(tests/safetensors_np.py): inspect's statistics against numpy's, dedupe's tie read back by the
independent reader, diff's exit codes and tolerances, verify over the whole malformed corpus,
and the exit code of bad usage. Usage: cli_test.py PARAMTREE CORPUS_DIR."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_st, write_st  # noqa: E402

exe, corpus = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAILED:", what)


def run(*args):
    p = subprocess.run([exe, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


with tempfile.TemporaryDirectory() as d:
    rng = np.random.default_rng(0)
    wte = rng.standard_normal((16, 8)).astype(np.float32)
    bias = np.linspace(-1, 1, 8).astype(np.float64)
    torch_file = os.path.join(d, "torch_style.safetensors")
    # A state_dict saved tensor by tensor: the tied weight under both names.
    write_st(torch_file, [("transformer.wte.weight", wte), ("lm_head.weight", wte.copy()),
                          ("transformer.h.0.mlp.bias", bias)])

    # inspect: the format, every tensor, statistics as numpy computes them.
    rc, out, err = run("inspect", torch_file)
    check(rc == 0 and "no paramtree structure" in out and "lm_head.weight" in out, "inspect text")
    rc, out, _ = run("inspect", "--json", torch_file)
    report = json.loads(out)
    check(rc == 0 and len(report["tensors"]) == 3, "inspect --json lists the tensors")
    by_name = {t["name"]: t for t in report["tensors"]}
    for name, a in (("transformer.wte.weight", wte), ("transformer.h.0.mlp.bias", bias)):
        t = by_name[name]
        check(t["shape"] == list(a.shape) and t["bytes"] == a.nbytes, f"{name}: shape and bytes")
        for key, want in (("min", a.min()), ("max", a.max()), ("mean", a.mean()), ("std", a.std())):
            check(abs(t[key] - float(want)) <= 1e-6 * max(1.0, abs(float(want))),
                  f"{name}: {key} {t[key]} vs numpy {want}")
    check(report["nonfinite"] == 0, "no NaN reported in a file without one")

    # dedupe: the equal tensors become one tie, stored once; the independent reader sees two
    # tensors and the tie in paramtree.ties.
    deduped = os.path.join(d, "deduped.safetensors")
    rc, out, _ = run("dedupe", "--json", torch_file, deduped)
    r = json.loads(out)
    check(rc == 0 and len(r["ties"]) == 1 and r["tensor_bytes_saved"] == wte.nbytes,
          f"dedupe: one tie, {wte.nbytes} bytes saved: {r}")
    check(r["file_bytes_after"] < r["file_bytes_before"], "dedupe: a smaller file")
    tensors, meta = read_st(deduped)
    check(len(tensors) == 2 and "paramtree.ties" in meta, "dedupe: two tensors and the tie")
    rc, out, _ = run("inspect", deduped)
    check(rc == 0 and "1 tie (each tied value stored once: 512 bytes saved)" in out,
          "inspect of the deduplicated file shows the tie")

    # diff: a file and its dedupe hold the same values; a changed element and a NaN differ.
    rc, out, _ = run("diff", torch_file, deduped)
    check(rc == 0 and "the files hold the same values" in out, f"diff of a dedupe: {out}")
    changed = os.path.join(d, "changed.safetensors")
    w2 = wte.copy()
    w2[0, 0] += 1e-3
    write_st(changed, [("transformer.wte.weight", w2), ("lm_head.weight", wte.copy()),
                       ("transformer.h.0.mlp.bias", bias)])
    rc, out, _ = run("diff", "--json", torch_file, changed)
    r = json.loads(out)
    diffs = {t["name"]: t for t in r["tensors"]}
    check(rc == 1 and r["differ"] and diffs["transformer.wte.weight"]["differing"] == 1,
          "diff: one element differs")
    check(abs(diffs["transformer.wte.weight"]["max_abs"] - 1e-3) < 1e-6, "diff: max |a - b|")
    rc, _, _ = run("diff", "--atol", "1e-2", torch_file, changed)
    check(rc == 0, "diff within the tolerance: exit 0")
    renamed = os.path.join(d, "renamed.safetensors")
    write_st(renamed, [("wte", wte)])
    rc, out, _ = run("diff", torch_file, renamed)
    check(rc == 1 and "only in" in out, "diff: names on one side only")

    # verify: the whole malformed corpus is invalid (exit 1, the loader's message), every good
    # file valid; --json says so.
    for name in sorted(os.listdir(corpus)):
        path = os.path.join(corpus, name)
        rc, out, err = run("verify", "--json", path)
        r = json.loads(out) if out.strip() else {}
        if name.startswith("bad_"):
            check(rc == 1 and r.get("valid") is False and r.get("error"), f"verify {name}: invalid")
        else:
            check(rc == 0 and r.get("valid") is True, f"verify {name}: valid")
    rc, out, _ = run("verify", deduped)
    check(rc == 0 and f"valid (2 tensors, {wte.nbytes + bias.nbytes} bytes read" in out,
          f"verify text: {out}")

    # Bad usage: exit 2 with a message.
    rc, _, err = run("inspect", os.path.join(d, "missing.safetensors"))
    check(rc == 2 and "does not exist" in err, "a missing file is a usage error")
    rc, _, err = run()
    check(rc == 2 and "subcommand" in err, "no subcommand is a usage error")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
