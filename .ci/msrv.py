#!/usr/bin/env python3
"""Fails when a dependency of the library (not dev-only) declares a rust-version
newer than ours: the one MSRV check this machine allows, since it has a single
toolchain and cannot fetch another."""
import json
import subprocess
import sys

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]))
pkgs = {p["id"]: p for p in meta["packages"]}
root = next(p for p in meta["packages"] if p["name"] == "ws-token-auth")
ours = tuple(int(x) for x in root["rust_version"].split("."))
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

seen, stack, bad = set(), [root["id"]], []
while stack:
    node = nodes[stack.pop()]
    for dep in node["deps"]:
        kinds = {k["kind"] for k in dep["dep_kinds"]}
        if node["id"] == root["id"] and kinds <= {"dev"}:
            continue  # dev-dependencies do not bind users
        if kinds <= {"dev"} or dep["pkg"] in seen:
            continue
        seen.add(dep["pkg"])
        stack.append(dep["pkg"])
        rv = pkgs[dep["pkg"]].get("rust_version")
        if rv and tuple(int(x) for x in rv.split(".")) > ours + (0,) * (3 - len(ours)):
            bad.append(f"{pkgs[dep['pkg']]['name']} {pkgs[dep['pkg']]['version']} needs {rv}")

print(f"rust-version {root['rust_version']}: {len(seen)} library dependencies checked")
if bad:
    print("dependencies newer than our rust-version:\n  " + "\n  ".join(bad))
    sys.exit(1)
