"""Check logged metric keys against the glossary in docs/metrics.md (so the glossary cannot rot).

A documented key is a backticked `<namespace>/<name>` in a table row; a segment written `<...>` (for
example `time/<phase>`) matches any single segment, and `{a,b}` lists alternatives.
"""

from __future__ import annotations

import re
from pathlib import Path

GLOSSARY = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _pattern(doc_key: str) -> re.Pattern[str]:
    parts = []
    for seg in re.split(r"(<[^>]+>|\{[^}]+\})", doc_key):
        if seg.startswith("<"):
            parts.append(r"[^/]+")
        elif seg.startswith("{"):
            parts.append("(" + "|".join(re.escape(a) for a in seg[1:-1].split(",")) + ")")
        else:
            parts.append(re.escape(seg))
    return re.compile("^" + "".join(parts) + "$")


def documented_patterns(path: Path = GLOSSARY) -> list[re.Pattern[str]]:
    keys = []
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            keys += re.findall(r"`([a-z]+/[^`]+)`", first_cell)
    return [_pattern(k) for k in keys]


def undocumented(keys: list[str] | set[str], path: Path = GLOSSARY) -> list[str]:
    """Keys that no glossary entry matches (step and time/* phase keys are covered by `time/<phase>`)."""
    pats = documented_patterns(path)
    return sorted(k for k in set(keys) if k != "step" and not any(p.match(k) for p in pats))


def python_snippets(path: Path) -> list[str]:
    """The ```python code blocks of a Markdown file, in order (the README's examples are run by the tests)."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
