"""Recursive comparison of JSON shapes: key sets and JSON types, path by path.

A list's items are pooled per path, so a shape is the union of what any item shows. Keys
that the reference shows on only some items are optional; keys it shows on every item are
required of the sandbox too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"  # JSON has one number type (PHP floats like 51.0 print as 51)
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return "dict"


def collect(doc: Any) -> tuple[dict, dict]:
    """(path -> list of key sets of the dicts at that path, path -> set of JSON types)."""
    keys: dict[str, list[frozenset]] = defaultdict(list)
    types: dict[str, set[str]] = defaultdict(set)

    def walk(v: Any, path: str) -> None:
        types[path].add(json_type(v))
        if isinstance(v, list):
            for x in v:
                walk(x, path + "[]")
        elif isinstance(v, dict):
            keys[path].append(frozenset(v))
            for k, x in v.items():
                walk(x, f"{path}.{k}")

    walk(doc, "$")
    return keys, types


def shape_problems(
    reference: Any,
    actual: Any,
    extra_ok: dict[str, set[str]] | None = None,
    extra_types: dict[str, set[str]] | None = None,
    may_omit: frozenset[str] = frozenset(),
) -> list[str]:
    """Differences of ``actual`` from ``reference``; empty when the shapes agree.

    - every path's keys in ``actual`` must be known to the reference at that path (or listed
      in ``extra_ok[path]``), and keys present on every reference item must be present;
    - every JSON type seen at a path in ``actual`` must be seen there in the reference
      (ints and floats are one JSON number type), or be listed in
      ``extra_types[path]``;
    - keys in ``may_omit`` are never required (fields Moodle leaves out when empty).
    """
    extra_ok = extra_ok or {}
    rk, rt = collect(reference)
    ak, at = collect(actual)
    problems = []
    for path, sets in ak.items():
        if path not in rk:
            if not any(path.startswith(p) for p in extra_ok.get("__subtrees__", set())):
                problems.append(f"{path}: object not in reference")
            continue
        union = frozenset().union(*rk[path])
        required = frozenset.intersection(*rk[path]) - may_omit
        allowed = union | extra_ok.get(path, set())
        for s in sets:
            if s - allowed:
                problems.append(f"{path}: unexpected keys {sorted(s - allowed)}")
            if required - s:
                problems.append(f"{path}: missing keys {sorted(required - s)}")
    for path, types in at.items():
        if path not in rt:
            continue
        ref_types = set(rt[path]) | (extra_types or {}).get(path, set())
        if types - ref_types:
            problems.append(f"{path}: types {sorted(types)} vs reference {sorted(rt[path])}")
    return sorted(set(problems))


def unshown_keys(reference: Any, actual: Any, excused: dict[str, set[str]] | None = None) -> list[str]:
    """Keys the reference shows at a path (on any item) that ``actual`` never shows there.

    :func:`shape_problems` treats a key the reference shows on only some items as optional, so
    it passes when no item shows it at all (``contents`` of a page module, ``status`` of an
    ungraded grade item); this finds such keys. ``excused[path]`` lists keys that ``actual``
    may leave out at ``path``, together with everything under them.
    """
    excused = excused or {}
    skipped = tuple(f"{path}.{key}" for path, keys in excused.items() for key in keys)
    rk, _ = collect(reference)
    ak, _ = collect(actual)
    problems = []
    for path, sets in rk.items():
        if any(path == s or path.startswith((s + ".", s + "[")) for s in skipped):
            continue
        wanted = frozenset().union(*sets) - excused.get(path, set())
        shown = frozenset().union(*ak.get(path, []))
        if wanted - shown:
            problems.append(f"{path}: never shows {sorted(wanted - shown)}")
    return sorted(problems)
