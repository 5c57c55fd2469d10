#!/usr/bin/env python3
"""Compile-fail tests: each tests/compile_fail/*.cpp must NOT compile, and the compiler's
message must contain the text after `// expect:` on its first line (the API's concepts and
static_asserts say what is wrong, in words a user can act on).

Usage: check.py INCLUDE_DIR CXX [CXX_ARGS...]
"""
import glob
import os
import subprocess
import sys

include, cxx = sys.argv[1], sys.argv[2:]
here = os.path.dirname(os.path.abspath(__file__))
failures = 0
for src in sorted(glob.glob(os.path.join(here, "*.cpp"))):
    first = open(src).readline()
    expected = first.split("expect:", 1)[1].strip() if "expect:" in first else ""
    result = subprocess.run([*cxx, "-std=c++20", "-fsyntax-only", "-I", include, src],
                            capture_output=True, text=True)
    name = os.path.basename(src)
    if result.returncode == 0:
        print(f"FAILED {name}: compiled, but must not")
        failures += 1
    elif expected not in result.stderr:
        print(f"FAILED {name}: the error does not say '{expected}':\n{result.stderr[:2000]}")
        failures += 1
    else:
        print(f"ok {name}: refused, saying '{expected}'")
sys.exit(1 if failures else 0)
