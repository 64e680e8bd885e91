"""What the source parsers share: opening (compressed) dumps, whitespace and JSON-lines handling, and the one
document record every parser yields."""

from __future__ import annotations

import bz2
import gzip
import json
import re
from pathlib import Path
from typing import Iterator

from gistpoc.utils import IssueLog, open_text

REPLACEMENT = "\ufffd"
DROP_SECTIONS = {"references", "external links", "see also", "notes", "further reading", "bibliography", "sources"}


def _open_binary(path: str | Path):
    path = str(path)
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _collection(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".bz2", ".gz", ".xml", ".jsonl", ".json", ".raw"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:48]


def _tidy(text: str) -> str:
    """Collapse runs of blank lines and trailing spaces."""
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    out, blank = [], 0
    for ln in lines:
        blank = blank + 1 if not ln.strip() else 0
        if blank <= 1:
            out.append(ln)
    return "\n".join(out).strip()


def _drop_trailing_sections(text: str) -> str:
    out = []
    skipping = False
    for ln in text.split("\n"):
        m = re.match(r"^(#+)\s+(.*)$", ln)
        if m:
            skipping = m.group(2).strip().lower() in DROP_SECTIONS
        if not skipping:
            out.append(ln)
    return "\n".join(out)


def _iter_json_lines(path, issues: IssueLog) -> Iterator[tuple[int, dict]]:
    lineno = 0
    with open_text(path, errors="replace") as fh:
        while True:
            try:
                line = fh.readline()
            except (EOFError, OSError) as err:
                issues.add(path, lineno + 1, f"truncated or corrupt archive: {err}")
                return
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            if REPLACEMENT in line:
                issues.add(path, lineno, f"non-UTF-8 bytes: {line.count(REPLACEMENT)} replaced")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                issues.add(path, lineno, f"malformed JSON: {err.msg}")
                continue
            if not isinstance(obj, dict):
                issues.add(path, lineno, "malformed JSON: not an object")
                continue
            yield lineno, obj


def _clean_ws(text: str) -> str:
    return re.sub(r"[ \t]*\n[ \t]*(?!\n)", " ", (text or "").strip()).replace("  ", " ")


def document(*, doc_id: str, source: str, collection: str, title: str, text: str, url: str, license: str, attribution: str,
             meta: dict) -> dict:
    """The document record every parser yields (one constructor, one key order)."""
    return {"doc_id": doc_id, "source": source, "collection": collection, "title": title, "text": text, "url": url,
            "license": license, "attribution": attribution, "meta": meta}
