#!/usr/bin/env python3
"""The crate's rooms and the imports between them, checked.

Usage: tools/rooms.py [SRC]   (default: src)

Prints each room's imports of other rooms (a room is a file or folder under
src/service/, or the signer library: every other file), then fails (exit 1)
on an import circle between files, or an import that runs against the
architecture:
  - the signer library imports nothing of the service (nor of the CLI);
  - the mint room imports nothing of control/ or http/;
  - the control room imports nothing of mint/ or http/.
Code after the first #[cfg(test)] of a file is not counted: tests may reach
across. References to the crate root (its `pub use` block) are not edges.
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"

mods = {}  # module path tuple -> file, relative to SRC
for root, _, files in os.walk(SRC):
    for f in files:
        if f.endswith(".rs"):
            rel = os.path.relpath(os.path.join(root, f), SRC)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods[tuple(parts)] = rel


def code(rel):
    text = open(os.path.join(SRC, rel)).read()
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    return re.sub(r"//[^\n]*", "", text)


def resolve(cur, path):
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    else:
        base = cur
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    for n in range(len(segs), 0, -1):
        if base + tuple(segs[:n]) in mods:
            return base + tuple(segs[:n])
    return None


edges = {m: set() for m in mods}
for m, rel in mods.items():
    text = code(rel)
    paths = []
    for prefix, items in re.findall(r"\buse\s+((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}", text):
        paths += [prefix + "::" + i.strip().split(" as ")[0] for i in items.split(",") if i.strip()]
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
    for p in paths:
        target = resolve(m, p)
        if target and target != m and target != ():
            edges[m].add(target)


def room(m):
    # The fuzz targets' wrappers (feature `fuzzing`) reach into every room,
    # as tests do; nothing imports them.
    if m[:1] == ("fuzzing",):
        return "fuzzing"
    if m[:1] == ("service",):
        return "service/" + m[1] if len(m) > 1 else "service"
    if m[:1] == ("cli",) or m == ("main",):
        return "cli"
    return "signer"


problems = []
# File-level circles (Tarjan).
index, low, stack, on, counter = {}, {}, [], set(), [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            problems.append("import circle: " + " <-> ".join(sorted(mods[x] for x in comp)))


for v in edges:
    if v not in index:
        visit(v)

forbidden = {
    "signer": ("service", "cli"),
    "service/mint": ("service/control", "service/http", "service/app"),
    "service/control": ("service/mint", "service/http", "service/app"),
}
graph = {}
for m, targets in edges.items():
    for t in targets:
        a, b = room(m), room(t)
        if a == b:
            continue
        graph.setdefault(a, set()).add(b)
        for bad in forbidden.get(a, ()):
            if b == bad or b.startswith(bad + "/"):
                problems.append(f"{mods[m]} imports {mods[t]}: {a} must not import {b}")

for a in sorted(graph):
    print(f"{a:18} -> {', '.join(sorted(graph[a]))}")
for p in problems:
    print("error:", p)
sys.exit(1 if problems else 0)
