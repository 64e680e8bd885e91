"""Technical documentation folders: reStructuredText, Markdown and HTML pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from gistpoc.data.sources.common import REPLACEMENT, _collection, _tidy, document
from gistpoc.utils import IssueLog

_RST_ROLE = re.compile(r":[a-zA-Z:+-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_HEADING_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def rst_to_text(src: str) -> tuple[str, str]:
    """reStructuredText -> (title, text). Headings become ``## Heading``; roles keep their text."""
    lines = src.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    title = ""
    levels: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _RST_HEADING_UNDERLINE.match(ln) and i + 2 < len(lines) and _RST_HEADING_UNDERLINE.match(lines[i + 2]):
            ln, nxt = lines[i + 1], lines[i + 2]  # overlined heading
            i += 1
        if ln.strip() and _RST_HEADING_UNDERLINE.match(nxt) and len(nxt.strip()) >= len(ln.strip()) - 2 and not _RST_HEADING_UNDERLINE.match(ln):
            char = nxt.strip()[0]
            if char not in levels:
                levels.append(char)
            head = _RST_ROLE.sub(r"\1", ln.strip()).replace("``", "").replace("*", "")
            if not title:
                title = head
            out.append(f"\n{'#' * min(len(levels), 4)} {head}\n")
            i += 2
            continue
        stripped = ln.strip()
        if stripped.startswith(".. "):
            m = re.match(r"\.\.\s+([\w:-]+)::\s*(.*)", stripped)
            if m and m.group(1) in {"function", "method", "class", "attribute", "data", "exception", "decorator", "module", "describe", "opcode", "cmdoption", "envvar"}:
                if m.group(1) != "module":
                    out.append(f"{m.group(2).strip()}:")
                while i + 1 < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i + 1]):
                    i += 1  # directive options (:synopsis:, :noindex: ...)
            elif m and m.group(1) in {"note", "warning", "seealso", "versionadded", "versionchanged", "deprecated", "impl-detail"}:
                if m.group(2).strip():
                    out.append(m.group(1).capitalize() + ": " + _RST_ROLE.sub(r"\1", m.group(2).strip()))
            else:
                # comments, index, toctree, images and other directives: drop them with their options
                i += 1
                while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))) and not (
                    lines[i].strip() and not lines[i].startswith((" ", "\t"))
                ):
                    if lines[i].strip() and not lines[i].lstrip().startswith(":") and m and m.group(1) in {"code-block", "highlight", "doctest", "testcode", "productionlist"}:
                        out.append(lines[i])
                    i += 1
                continue
            i += 1
            continue
        if re.match(r"^\s*:[\w-]+:.*$", ln) and not out:
            i += 1
            continue
        text = _RST_ROLE.sub(r"\1", ln).replace("``", "`")
        text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)
        text = re.sub(r"`([^`]+)`_+", r"\1", text)
        text = text.replace("::", ":") if text.rstrip().endswith("::") else text
        out.append(text.rstrip())
        i += 1
    return title, _tidy("\n".join(out))


def markdown_to_text(src: str) -> tuple[str, str]:
    title = ""
    for ln in src.split("\n"):
        m = re.match(r"^#\s+(.*)", ln)
        if m:
            title = m.group(1).strip()
            break
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", src)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    return title, _tidy(text)


def html_to_text(src: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(src, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer"]):
        tag.decompose()
    for level in range(1, 5):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n{'#' * level} {h.get_text(' ', strip=True)}\n")
    title = soup.title.get_text(strip=True) if soup.title else ""
    return title, _tidy(soup.get_text("\n"))


DOC_SUFFIXES = {".rst": rst_to_text, ".txt": rst_to_text, ".md": markdown_to_text, ".markdown": markdown_to_text, ".html": html_to_text, ".htm": html_to_text}


def iter_techdocs(folder: str | Path, issues: IssueLog) -> Iterator[dict]:
    """Every reST / Markdown / HTML file under ``folder`` (sorted walk), one document each."""
    folder = Path(folder)
    if not folder.is_dir():
        issues.add(folder, None, "missing input: not a directory")
        return
    collection = _collection(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        convert = DOC_SUFFIXES.get(path.suffix.lower())
        if convert is None:
            continue
        raw = path.read_bytes()
        src = raw.decode("utf-8", errors="replace")
        rel = path.relative_to(folder).as_posix()
        if REPLACEMENT in src:
            issues.add(path, None, f"non-UTF-8 bytes: {src.count(REPLACEMENT)} replaced")
        title, text = convert(src)
        if not text.strip():
            issues.add(path, None, "empty page: no text")
            continue
        title = title or path.stem
        yield document(
            doc_id=f"{collection}:{rel.removesuffix('.txt')}",
            source="techdocs",
            collection=collection,
            title=title,
            text=text if text.lstrip().startswith("#") else f"# {title}\n\n{text}",
            url=f"file:{rel}",
            license="PSF-2.0 (Python documentation)" if "python" in collection else "see source",
            attribution=f'"{title}" ({rel}) from {folder.name}.',
            meta={"path": rel, "format": path.suffix.lstrip(".")},
        )
