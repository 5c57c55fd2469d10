#!/usr/bin/env python3
"""Benchmark figures quoted by the docs pages come from docs/benchmarks.md, not from a hand.

scripts/bench (bench_report.py) writes each figure another page quotes inside a marker,
`<!-- figure:NAME -->1.52 ms<!-- /figure -->`; a page quotes it with the same marker. `sync`
copies every figure's text from benchmarks.md into the pages (scripts/bench runs it after
writing benchmarks.md); `check` (a docs test) fails, naming the page and line, when a page's
text differs from benchmarks.md's or names a figure benchmarks.md does not have.

Usage: figures.py sync|check DOCS_DIR
"""
import os
import re
import sys

MARK = re.compile(r"<!-- figure:([A-Za-z0-9_./-]+) -->(.*?)<!-- /figure -->", re.S)


def figures(text):
    return {m.group(1): m.group(2) for m in MARK.finditer(text)}


def pages(docs):
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md") and name != "benchmarks.md":
            yield os.path.join(docs, name)


def main():
    mode, docs = sys.argv[1], sys.argv[2]
    known = figures(open(os.path.join(docs, "benchmarks.md"), encoding="utf-8").read())
    problems = 0
    for page in pages(docs):
        text = open(page, encoding="utf-8").read()

        def replace(m):
            nonlocal problems
            name, quoted = m.group(1), m.group(2)
            line = text.count("\n", 0, m.start()) + 1
            if name not in known:
                print(f"{page}:{line}: figure '{name}' is not in benchmarks.md", file=sys.stderr)
                problems += 1
                return m.group(0)
            if quoted != known[name] and mode == "check":
                print(f"{page}:{line}: figure '{name}' says '{quoted}', benchmarks.md says "
                      f"'{known[name]}' (scripts/lib/figures.py sync)", file=sys.stderr)
                problems += 1
            return f"<!-- figure:{name} -->{known[name]}<!-- /figure -->"

        updated = MARK.sub(replace, text)
        if mode == "sync" and updated != text:
            open(page, "w", encoding="utf-8").write(updated)
            print(f"figures updated in {page}")
    if mode == "check":
        print(f"{len(known)} figures in benchmarks.md, {problems} quoted wrongly")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
