"""PHP bracket-encoded parameters (``criteria[0][key]=email``) decoded the way PHP does it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SEGMENT = re.compile(r"\[([^\]]*)\]")


class ParamError(ValueError):
    """The parameters cannot be decoded (Moodle answers ``invalidparameter``)."""


def _split(name: str) -> list[str]:
    head, _, rest = name.partition("[")
    if not rest:
        return [head]
    keys = [head] + _SEGMENT.findall("[" + rest)
    return keys


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn ``[("options[ids][0]", "7")]`` into ``{"options": {"ids": {"0": "7"}}}`` then lists.

    Maps whose keys are all integers become lists ordered by key, like PHP arrays that
    Moodle's ``external_multiple_structure`` accepts. ``a[]=x`` appends.
    """
    root: dict[str, Any] = {}
    for name, value in pairs:
        keys = _split(name)
        node = root
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if key == "":
                key = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[key] = value
            else:
                nxt = node.get(key)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[key] = nxt
                node = nxt
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v) for k, v in node.items()}
    if out and all(re.fullmatch(r"-?\d+", k) for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


def encode(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of :func:`decode` (used by tests): nested dicts/lists to bracket pairs."""
    out: list[tuple[str, str]] = []
    items = params.items() if isinstance(params, dict) else enumerate(params)
    for k, v in items:
        name = f"{prefix}[{k}]" if prefix else str(k)
        if isinstance(v, (dict, list, tuple)):
            out.extend(encode(v if not isinstance(v, tuple) else list(v), name))
        elif isinstance(v, bool):
            out.append((name, "1" if v else "0"))
        else:
            out.append((name, str(v)))
    return out
