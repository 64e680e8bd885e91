"""arXiv: Kaggle metadata abstracts and unarXive full texts (JSON lines)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from gistpoc.data.sources.common import _clean_ws, _collection, _iter_json_lines, _tidy, document
from gistpoc.utils import IssueLog


def iter_arxiv_metadata(path: str | Path, issues: IssueLog) -> Iterator[dict]:
    """Kaggle ``arxiv-metadata-oai-snapshot`` JSON lines: one abstract document per record."""
    for lineno, rec in _iter_json_lines(path, issues):
        arxiv_id, title, abstract = rec.get("id"), _clean_ws(rec.get("title", "")), _clean_ws(rec.get("abstract", ""))
        if not arxiv_id or not abstract:
            issues.add(path, lineno, "empty page: record without id or abstract")
            continue
        yield document(
            doc_id=f"arxiv:{arxiv_id}",
            source="arxiv",
            collection=_collection(path),
            title=title,
            text=f"# {title}\n\n## Abstract\n{abstract}",
            url=f"https://arxiv.org/abs/{arxiv_id}",
            license=rec.get("license") or "arXiv metadata CC0 1.0",
            attribution=f'{_clean_ws(rec.get("authors", ""))}, "{title}", arXiv:{arxiv_id}.',
            meta={"categories": rec.get("categories", ""), "arxiv_id": arxiv_id, "line": lineno},
        )


def _resolve_unarxive(text: str, refs: dict, cites: dict) -> str:
    def formula(m):
        entry = refs.get(m.group(2)) or {}
        if m.group(1) == "formula":
            return f"${(entry.get('latex') or '').strip()}$"
        return "Figure" if m.group(1) == "figure" else "Table"

    text = re.sub(r"\{\{(formula|figure|table):([0-9a-f-]+)\}\}", formula, text)
    text = re.sub(r"\{\{cite:([0-9a-f-]+)\}\}", lambda m: f"[{cites.get(m.group(1), '?')}]", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def iter_unarxive(path: str | Path, issues: IssueLog) -> Iterator[dict]:
    """unarXive full-text JSON lines: title, abstract, then body paragraphs under section headings."""
    for lineno, rec in _iter_json_lines(path, issues):
        meta = rec.get("metadata") or {}
        arxiv_id = meta.get("id") or rec.get("paper_id")
        title = _clean_ws(meta.get("title", ""))
        body = rec.get("body_text") or []
        if not arxiv_id or not body:
            issues.add(path, lineno, "empty page: paper without id or body_text")
            continue
        refs = rec.get("ref_entries") or {}
        cites = {key: i + 1 for i, key in enumerate(rec.get("bib_entries") or {})}
        parts = [f"# {title}"]
        abstract = (rec.get("abstract") or {}).get("text") or meta.get("abstract") or ""
        if abstract.strip():
            parts.append("## Abstract\n" + _clean_ws(abstract))
        section = None
        for para in body:
            if str(para.get("sec_number")) == "-1" and not para.get("section"):
                continue  # LaTeX preamble / title-block residue before the first section
            sec = " ".join(x for x in (para.get("sec_number"), para.get("section")) if x)
            if sec and sec != section:
                parts.append(f"## {sec}")
                section = sec
            parts.append(_resolve_unarxive(para.get("text", ""), refs, cites))
        yield document(
            doc_id=f"arxiv:{arxiv_id}",
            source="arxiv",
            collection=_collection(path),
            title=title,
            text=_tidy("\n\n".join(parts)),
            url=f"https://arxiv.org/abs/{arxiv_id}",
            license=meta.get("license") or "see unarXive",
            attribution=f'{_clean_ws(meta.get("authors", ""))}, "{title}", arXiv:{arxiv_id}; full text via unarXive 2022 (Saier et al., JCDL 2023).',
            meta={"categories": meta.get("categories", ""), "arxiv_id": arxiv_id, "discipline": rec.get("discipline"), "line": lineno},
        )
