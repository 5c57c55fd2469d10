#!/usr/bin/env python3
"""Turns the ```cpp blocks of one markdown file into one C++ program (run by the test suite).

A block fenced as ```cpp becomes the body of its own function; a block fenced as
```cpp global is emitted at namespace scope (struct definitions, registrations, helpers).
Every example runs in order; `assert` stays active (NDEBUG is undefined) and an exception
or failed assert fails the program, naming the markdown line of the block.
Fences in another C++ spelling (```c++, ```cxx) are rejected so no example escapes the build.
"""
import re
import sys

PRELUDE = """// Generated from {src} by scripts/lib/docs_extract.py: do not edit.
#undef NDEBUG
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <paramtree/paramtree.hpp>

namespace pt = paramtree;
"""


def main() -> int:
    src, out = sys.argv[1], sys.argv[2]
    lines = open(src, encoding="utf-8").read().split("\n")
    globals_, bodies = [], []
    i = 0
    while i < len(lines):
        m = re.match(r"^```\s*([A-Za-z+#]*)\s*(\w*)\s*$", lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, flavour = m.group(1).lower(), m.group(2)
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            print(f"{src}:{i + 1}: unterminated code fence", file=sys.stderr)
            return 1
        if lang in ("c++", "cxx", "cc", "c"):
            print(f"{src}:{i + 1}: fence C++ examples as ```cpp so they are compiled", file=sys.stderr)
            return 1
        if lang == "cpp":
            code = "\n".join(lines[start:j])
            line_directive = f'#line {start + 1} "{src}"\n'
            if flavour == "global":
                globals_.append(line_directive + code)
            elif flavour in ("", "run"):
                bodies.append((start, line_directive + code))
            else:
                print(f"{src}:{i + 1}: unknown block flavour '{flavour}'", file=sys.stderr)
                return 1
        i = j + 1
    if not bodies and not globals_:
        print(f"{src}: no ```cpp examples", file=sys.stderr)
    text = program([PRELUDE.format(src=src)] + globals_,
                   [(f"{src}:{start}", code) for start, code in bodies], "examples")
    open(out, "w", encoding="utf-8").write(text)
    return 0


def program(head, examples, what):
    """The C++ program: `head` (prelude, globals), one function per (label, body) of
    `examples`, and a main that runs them all in order, naming the label of any that throws
    and printing `N <what> run, M failed`. Shared with header_examples.py."""
    parts = list(head)
    for n, (_, body) in enumerate(examples):
        parts.append(f"static void example_{n}() {{\n{body}\n}}\n")
    parts.append("int main() {\n    int failed = 0;\n")
    for n, (label, _) in enumerate(examples):
        parts.append(
            f"    try {{ example_{n}(); }} catch (const std::exception& e) {{\n"
            f"        std::cerr << \"{label}: example threw: \" << e.what() << \"\\n\";\n"
            f"        ++failed;\n    }}\n")
    parts.append(f"    std::cout << \"{len(examples)} {what} run, \" << failed << \" failed\\n\";\n")
    parts.append("    return failed == 0 ? 0 : 1;\n}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
