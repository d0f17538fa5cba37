#!/usr/bin/env python3
"""The library's modules import only from below: no import cycle in src/.

Reads every `crate::<module>` path in src/ (in `use` lines, `use crate::{...}`
groups and paths in code; comments and doc comments aside), by top-level
module (src/store/cache.rs belongs to `store`), and fails, naming the edges,
when the graph has a cycle, when a module imports one that LAYERS puts at its
own level or above it, or when code names an item through the crate root
(`crate::Identity`), which hides the module it comes from. LAYERS is the
README's "Layout": change both together.

usage: python3 scripts/check-layers.py [--graph]
"""

import re
import sys
from pathlib import Path

# Bottom first. Modules on one line may not import each other.
LAYERS = [
    ["token", "redis_conn", "deflate"],  # the secret; helpers that know nothing of this crate
    ["extract"],  # where the token is in a request
    ["origin"],  # who may use a cookie
    ["access"],  # what changed about access (events, close reasons)
    ["store"],  # who the token belongs to; the management and ticket contracts
    ["ticket"],  # single-use connect tickets over the ticket contract
    ["rejection"],  # every refusal and its answer
    ["identity"],  # what handlers get
    ["authenticator"],  # the decision
    ["layer"],  # tower
    ["live"],  # after the upgrade: the socket registry, the bus
    ["lifecycle"],  # management: store, registry and bus in one call per intent
    ["axum", "tungstenite"],  # servers
    ["test_util"],  # the store conformance suite, over everything
]

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def imports(text: str):
    text = strip_comments(text)
    found = set(re.findall(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", text))
    # use crate::{a::X, b, c::{..}}: the top-level names inside the braces
    for group in re.finditer(r"\bcrate::\{", text):
        depth, i, start = 1, group.end(), group.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        inner = text[start : i - 1]
        level, current, names = 0, "", []
        for ch in inner:
            if ch == "{":
                level += 1
            elif ch == "}":
                level -= 1
            elif ch == "," and level == 0:
                names.append(current)
                current = ""
                continue
            current += ch
        names.append(current)
        for name in names:
            head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", name)
            if head:
                found.add(head.group(1))
    return found


def main():
    files = [p for p in SRC.rglob("*.rs") if p.name != "lib.rs" or p.parent != SRC]
    modules = {module_of(p) for p in files}
    graph = {m: set() for m in modules}
    root_paths = []
    for path in files:
        here = module_of(path)
        for name in imports(path.read_text()):
            if name in modules and name != here:
                graph[here].add(name)
            elif name[0].isupper():
                # A root re-export hides which module the item comes from.
                root_paths.append(f"{path.relative_to(SRC.parent)} names crate::{name}: name its module instead")
    if "--graph" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {' '.join(sorted(graph[m]))}")
    errors = list(root_paths)
    # Cycles: Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    for scc in sccs:
        edges = [f"{a} -> {b}" for a in scc for b in sorted(graph[a]) if b in scc]
        errors.append(f"import cycle through {', '.join(scc)}: {'; '.join(edges)}")
    level = {m: i for i, line in enumerate(LAYERS) for m in line}
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a in level and b in level and level[b] >= level[a]:
                errors.append(f"{a} imports {b}, which the layers put at its level or above")
            if a in level and b not in level:
                errors.append(f"{a} (a layer) imports {b}, which is above every layer")
    for error in errors:
        print(f"check-layers: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"check-layers: {len(modules)} modules, no cycle, layers respected")


if __name__ == "__main__":
    main()
