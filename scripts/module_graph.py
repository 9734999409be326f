#!/usr/bin/env python3
"""Checks the one-way import rule of a crate (docs/architecture.md).

Folds every `crate::MODULE` path that a source file names outside its
`#[cfg(test)]` part into a graph of top-level modules (a folder is one
module), and fails when the graph has a cycle, printing it. Also fails on a
non-test function longer than MAX_FN_LINES without a comment above it that
says why (mentions "long" or "over 80"). Modules declared `#[cfg(test)]`
(test files, fixtures) are left out.

Usage: module_graph.py CRATE_SRC_DIR...
"""
import pathlib
import re
import sys

MAX_FN_LINES = 80
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
FN_START = re.compile(r"^(\s*)(pub(\([a-z]+\))?\s+)?(async\s+)?fn\s+([a-z0-9_]+)")


def module_of(src, path):
    rel = path.relative_to(src)
    first = rel.parts[0]
    return first[:-3] if first.endswith(".rs") else first


def non_test_lines(text):
    """The file's lines up to its `#[cfg(test)]` module (tests sit last)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(
                r"\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+", lines[i + 1]):
            return lines[:i]
    return lines


def long_functions(path, lines):
    found = []
    for i, line in enumerate(lines):
        m = FN_START.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].startswith(indent + "}") and len(lines[j].rstrip()) == len(indent) + 1),
                   None)
        if end is None or end - i + 1 <= MAX_FN_LINES:
            continue
        above = "\n".join(lines[max(0, i - 6):i]).lower()
        if "long" not in above and "over 80" not in above:
            found.append(f"{path}:{i + 1}: fn {m.group(5)} is {end - i + 1} lines "
                         f"(over {MAX_FN_LINES}, and no comment says why)")
    return found


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_only(src):
    """Files of modules declared `#[cfg(test)] mod NAME;` (and what is below them)."""
    marked = set()
    for path in src.rglob("*.rs"):
        lines = path.read_text(encoding="utf-8").splitlines()
        base = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
        for i, line in enumerate(lines[:-1]):
            m = re.match(r"\s*(pub(\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", lines[i + 1])
            if line.strip() == "#[cfg(test)]" and m:
                marked.add(base / (m.group(3) + ".rs"))
                marked.add(base / m.group(3))
    return marked


def check(src):
    src = pathlib.Path(src)
    graph, problems = {}, []
    tests = test_only(src)
    for path in sorted(src.rglob("*.rs")):
        if path in tests or any(parent in tests for parent in path.parents):
            continue
        lines = non_test_lines(path.read_text(encoding="utf-8"))
        me = module_of(src, path)
        for line in lines:
            code = line.split("//")[0]
            for target in CRATE_PATH.findall(code):
                if target != me:
                    graph.setdefault(me, set()).add(target)
        problems += long_functions(path, lines)
    for cycle in cycles(graph):
        problems.append(f"{src}: import cycle: {' -> '.join(cycle)}")
    edges = sum(len(v) for v in graph.values())
    print(f"{src}: {len(graph)} modules, {edges} imports between them, "
          f"{len(problems)} problem(s)")
    return problems


def main():
    problems = [p for src in sys.argv[1:] for p in check(src)]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
