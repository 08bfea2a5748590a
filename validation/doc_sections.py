"""Sections of a markdown file that a script owns: the text between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` (docs/validation.md holds sections of validation/stiff_solvers.py and
validation/work_precision.py inside the page validation/orders.py writes)."""

from __future__ import annotations

import os


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: str, name: str, text: str) -> None:
    """Replace section ``name`` of ``path`` by ``text`` (which starts and ends with its markers), or
    append it when the file has no such section."""
    begin, end = markers(name)
    old = open(path).read() if os.path.exists(path) else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + text + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(new)


def kept_sections(path: str, names) -> str:
    """The sections ``names`` of ``path`` as they stand (markers included), for a script that rewrites
    the rest of the file; empty when the file or a section is missing."""
    try:
        old = open(path).read()
    except OSError:
        return ""
    out = []
    for name in names:
        begin, end = markers(name)
        if begin in old and end in old:
            out.append("\n" + old[old.index(begin):old.index(end) + len(end)] + "\n")
    return "".join(out)
