#!/usr/bin/env python3
"""The README's runnable blocks: a line `<!-- runnable: NAME -->` right before a ```sh fence
marks the block that follows as one a test runs (tests/check_readme.sh).

  readme_blocks.py README.md names          the names, one a line, in order
  readme_blocks.py README.md get NAME       that block's text

A marker not followed by a ```sh block, a block left open or a name used twice is an error
(exit 1, one line), so a broken marker fails the test instead of hiding a block."""
import re
import sys


def blocks(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = {}, 0
    order = []
    while i < len(lines):
        m = re.fullmatch(r"<!-- runnable: ([a-z0-9-]+) -->", lines[i].strip())
        if m:
            name = m.group(1)
            if name in out:
                sys.exit(f"{path}:{i + 1}: runnable block '{name}' named twice")
            if i + 1 >= len(lines) or lines[i + 1].strip() != "```sh":
                sys.exit(f"{path}:{i + 1}: marker '{name}' is not followed by a ```sh block")
            j = i + 2
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j >= len(lines):
                sys.exit(f"{path}:{i + 2}: block '{name}' is never closed")
            out[name] = "\n".join(lines[i + 2:j]) + "\n"
            order.append(name)
            i = j
        elif "runnable" in lines[i] and "<!--" in lines[i]:
            sys.exit(f"{path}:{i + 1}: not a marker of the form '<!-- runnable: NAME -->'")
        i += 1
    return order, out


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("names", "get"):
        sys.exit("usage: readme_blocks.py README.md names | get NAME")
    order, out = blocks(sys.argv[1])
    if sys.argv[2] == "names":
        print("\n".join(order))
    else:
        name = sys.argv[3] if len(sys.argv) > 3 else ""
        if name not in out:
            sys.exit(f"{sys.argv[1]}: no runnable block '{name}'")
        sys.stdout.write(out[name])


main()
