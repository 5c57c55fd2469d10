#!/usr/bin/python3
"""Writes the 8x8 handwritten digits that Debian's python3-sklearn ships
(sklearn/datasets/data/digits.csv.gz: 1,797 images, 64 pixel values 0-16 then the label per
line) as a plain CSV file for the Siamese CNN example. Exits 77 (skipped) with a message
saying what to install when the package is absent.

Usage: digits_data.py OUT.csv
"""
import gzip
import importlib.util
import os
import sys

# Found without importing sklearn itself (slow, and needs scipy at import).
spec = importlib.util.find_spec("sklearn")
source = None
if spec is not None and spec.submodule_search_locations:
    candidate = os.path.join(spec.submodule_search_locations[0], "datasets", "data",
                             "digits.csv.gz")
    if os.path.exists(candidate):
        source = candidate
if source is None:
    print("digits data not found: it comes with Debian's python3-sklearn "
          "(apt-get install python3-sklearn); skipping")
    sys.exit(77)
with gzip.open(source, "rt") as f, open(sys.argv[1], "w") as out:
    out.write(f.read())
