"""Parsers that turn raw dumps into plain-text documents.

Every parser yields document dicts ``{doc_id, source, collection, title, text, url, license,
attribution, meta}`` and records bad input (file, line or page, reason) in an ``IssueLog``
instead of failing the whole run. Large inputs are streamed, never loaded whole.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import re
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree as ET

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


# ----------------------------------------------------------------------------- Wikipedia XML


def wikitext_to_text(wikitext: str) -> str:
    """MediaWiki markup -> clean text; headings become ``## Heading`` (level kept)."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    for tag in code.filter_tags(recursive=True):
        if str(tag.tag).lower() in {"ref", "math", "gallery", "references", "table", "timeline", "score"}:
            try:
                code.remove(tag)
            except ValueError:
                pass
    for tpl in code.filter_templates(recursive=False):
        try:
            code.remove(tpl)
        except ValueError:
            pass
    for link in code.filter_wikilinks(recursive=False):
        target = str(link.title).strip().lower()
        if target.startswith(("file:", "image:", "category:", "media:")):
            try:
                code.remove(link)
            except ValueError:
                pass
    for heading in code.filter_headings(recursive=False):
        title = heading.title.strip_code().strip()
        code.replace(heading, f"\nHEADINGMARK{heading.level}MARK {title}\n")  # '#' would be read as list markup
    text = code.strip_code(normalize=True, collapse=True)
    text = re.sub(r"HEADINGMARK(\d)MARK ", lambda m: "#" * int(m.group(1)) + " ", text)
    text = re.sub(r"\{\|.*?\|\}", "", text, flags=re.S)  # leftover wiki tables
    text = re.sub(r"\[\[|\]\]|'''|''", "", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = "\n".join(ln for ln in text.split("\n") if not re.fullmatch(r"\s*[|!{}*:;]+.*", ln) or ln.startswith("#"))
    return _tidy(_drop_trailing_sections(text))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_mediawiki_xml(path: str | Path, issues: IssueLog, chunk_chars: int = 1 << 16) -> Iterator[dict]:
    """Stream articles (namespace 0, not redirects) from a MediaWiki XML export 0.10/0.11.

    The file (plain or .bz2/.gz) is decoded incrementally; undecodable bytes become U+FFFD and are
    counted per page; a truncated or malformed file keeps every page parsed before the damage.
    """
    parser = ET.XMLPullParser(events=("start", "end"))
    root = None
    dbname = None
    raw = _open_binary(path)
    reader = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
    lines_seen = 0
    try:
        while True:
            try:
                chunk = reader.read(chunk_chars)
            except (EOFError, OSError) as err:
                issues.add(path, f"line~{lines_seen}", f"truncated or corrupt archive: {err}")
                return
            if not chunk:
                break
            lines_seen += chunk.count("\n")
            try:
                parser.feed(chunk)
                events = list(parser.read_events())
            except ET.ParseError as err:
                issues.add(path, f"line~{lines_seen}", f"malformed XML: {err}")
                return
            for event, elem in events:
                if event == "start":
                    if root is None:
                        root = elem
                    continue
                name = _local(elem.tag)
                if name == "dbname":
                    dbname = (elem.text or "").strip()
                if name != "page":
                    continue
                doc = _page_to_doc(elem, path, dbname or "enwiki", issues)
                if doc is not None:
                    yield doc
                if root is not None:
                    root.clear()  # streaming: drop finished pages
        try:
            parser.close()
        except ET.ParseError as err:
            issues.add(path, f"line~{lines_seen}", f"truncated XML: {err}")
    finally:
        reader.close()


def _page_to_doc(page, path, dbname: str, issues: IssueLog) -> dict | None:
    fields = {_local(child.tag): child for child in page}
    title = (fields["title"].text or "").strip() if "title" in fields else ""
    ns = (fields["ns"].text or "").strip() if "ns" in fields else "0"
    if ns != "0" or "redirect" in fields:
        return None
    revision = fields.get("revision")
    text_el = None
    rev_id = ts = None
    if revision is not None:
        for child in revision:
            lname = _local(child.tag)
            if lname == "text":
                text_el = child
            elif lname == "id":
                rev_id = (child.text or "").strip()
            elif lname == "timestamp":
                ts = (child.text or "").strip()
    wikitext = (text_el.text or "") if text_el is not None else ""
    if wikitext.lstrip().lower().startswith("#redirect"):
        return None
    if REPLACEMENT in wikitext or REPLACEMENT in title:
        issues.add(path, f"page {title!r}", f"non-UTF-8 bytes: {wikitext.count(REPLACEMENT)} replaced")
    if not wikitext.strip():
        issues.add(path, f"page {title!r}", "empty page: no wikitext")
        return None
    text = wikitext_to_text(wikitext)
    if not text.strip():
        issues.add(path, f"page {title!r}", "empty page: no text after markup removal")
        return None
    page_id = (fields["id"].text or "").strip() if "id" in fields else ""
    url_title = title.replace(" ", "_")
    return {
        "doc_id": f"{dbname}:{page_id or url_title}",
        "source": "wikipedia",
        "collection": _collection(path),
        "title": title,
        "text": f"# {title}\n\n{text}",
        "url": f"https://en.wikipedia.org/w/index.php?title={url_title}&oldid={rev_id}",
        "license": "CC BY-SA / GFDL (Wikipedia)",
        "attribution": f'Wikipedia contributors, "{title}", revision {rev_id} ({ts}).',
        "meta": {"page_id": page_id, "revision_id": rev_id, "timestamp": ts},
    }


# ----------------------------------------------------------------------------- WikiText raw

_WT_TITLE = re.compile(r"^ = ([^=].*?) = $")
_WT_HEAD = re.compile(r"^ ((?:= )+)(.*?) ((?:= )+)?=?\s*$")


def _detokenize_wikitext(line: str) -> str:
    line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    line = re.sub(r" ([.,;:!?)\]'])", r"\1", line)
    line = re.sub(r"([(\[]) ", r"\1", line)
    line = re.sub(r'" ([^"]*?) "', r'"\1"', line).replace(" 's", "'s")
    return line.strip()


def iter_wikitext_raw(path: str | Path, issues: IssueLog) -> Iterator[dict]:
    """WikiText-2/103 raw files: articles start at `` = Title = `` lines, sections at `` = = X = = ``."""
    title, body, start_line = None, [], 0

    def flush():
        if title is None:
            return None
        text = _tidy(_drop_trailing_sections("\n".join(body)))
        if not text:
            issues.add(path, start_line, f"empty page: article {title!r} has no text")
            return None
        return {
            "doc_id": f"wikitext:{re.sub(r'[^A-Za-z0-9]+', '_', title).strip('_')}",
            "source": "wikipedia",
            "collection": _collection(path),
            "title": title,
            "text": f"# {title}\n\n{text}",
            "url": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}",
            "license": "CC BY-SA 3.0 / GFDL (WikiText, Merity et al. 2016)",
            "attribution": f'Wikipedia contributors, "{title}", via WikiText-2 (Merity et al. 2016).',
            "meta": {"line": start_line},
        }

    with open_text(path, errors="replace") as fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except (EOFError, OSError) as err:
                issues.add(path, lineno, f"truncated or corrupt archive: {err}")
                break
            if not line:
                break
            lineno += 1
            line = line.rstrip("\r\n")
            if REPLACEMENT in line:
                issues.add(path, lineno, f"non-UTF-8 bytes: {line.count(REPLACEMENT)} replaced")
            m = _WT_TITLE.match(line)
            if m and not line.startswith(" = = "):
                doc = flush()
                if doc:
                    yield doc
                title, body, start_line = m.group(1).strip(), [], lineno
                continue
            if not line.strip():
                continue
            hm = re.match(r"^ (=(?: =)+) (.+?) =(?: =)*\s*$", line) if line.startswith(" = = ") else None
            if hm:
                level = hm.group(1).count("=")
                body.append(f"\n{'#' * level} {_detokenize_wikitext(hm.group(2))}\n")
            else:
                body.append(_detokenize_wikitext(line))
    doc = flush()
    if doc:
        yield doc


# ----------------------------------------------------------------------------- arXiv


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


def iter_arxiv_metadata(path: str | Path, issues: IssueLog) -> Iterator[dict]:
    """Kaggle ``arxiv-metadata-oai-snapshot`` JSON lines: one abstract document per record."""
    for lineno, rec in _iter_json_lines(path, issues):
        arxiv_id, title, abstract = rec.get("id"), _clean_ws(rec.get("title", "")), _clean_ws(rec.get("abstract", ""))
        if not arxiv_id or not abstract:
            issues.add(path, lineno, "empty page: record without id or abstract")
            continue
        yield {
            "doc_id": f"arxiv:{arxiv_id}",
            "source": "arxiv",
            "collection": _collection(path),
            "title": title,
            "text": f"# {title}\n\n## Abstract\n{abstract}",
            "url": f"https://arxiv.org/abs/{arxiv_id}",
            "license": rec.get("license") or "arXiv metadata CC0 1.0",
            "attribution": f'{_clean_ws(rec.get("authors", ""))}, "{title}", arXiv:{arxiv_id}.',
            "meta": {"categories": rec.get("categories", ""), "arxiv_id": arxiv_id, "line": lineno},
        }


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
        yield {
            "doc_id": f"arxiv:{arxiv_id}",
            "source": "arxiv",
            "collection": _collection(path),
            "title": title,
            "text": _tidy("\n\n".join(parts)),
            "url": f"https://arxiv.org/abs/{arxiv_id}",
            "license": meta.get("license") or "see unarXive",
            "attribution": f'{_clean_ws(meta.get("authors", ""))}, "{title}", arXiv:{arxiv_id}; full text via unarXive 2022 (Saier et al., JCDL 2023).',
            "meta": {"categories": meta.get("categories", ""), "arxiv_id": arxiv_id, "discipline": rec.get("discipline"), "line": lineno},
        }


# ----------------------------------------------------------------------------- technical docs

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
        yield {
            "doc_id": f"{collection}:{rel.removesuffix('.txt')}",
            "source": "techdocs",
            "collection": collection,
            "title": title,
            "text": text if text.lstrip().startswith("#") else f"# {title}\n\n{text}",
            "url": f"file:{rel}",
            "license": "PSF-2.0 (Python documentation)" if "python" in collection else "see source",
            "attribution": f'"{title}" ({rel}) from {folder.name}.',
            "meta": {"path": rel, "format": path.suffix.lstrip(".")},
        }


# ----------------------------------------------------------------------------- Hugging Face datasets


def iter_hf_dataset(spec: dict, issues: IssueLog) -> Iterator[dict]:
    """Rows of a Hugging Face dataset (local files such as parquet, or a hub id) as documents."""
    import datasets

    kwargs = {"split": spec.get("split", "train")}
    if spec.get("data_files"):
        kwargs["data_files"] = spec["data_files"]
    ds = datasets.load_dataset(spec["path"], **kwargs)
    text_field, title_field = spec.get("text_field", "text"), spec.get("title_field", "title")
    if text_field not in ds.column_names:
        raise KeyError(f"sources.hf_datasets[{spec['name']}]: column {text_field!r} not in {ds.column_names}")
    for i, row in enumerate(ds):
        if i >= spec.get("max_records", 1000):
            break
        text = (row.get(text_field) or "").strip()
        title = str(row.get(title_field) or f"{spec['name']} {i}")
        if not text:
            issues.add(spec["path"], i, "empty page: empty text field")
            continue
        yield {
            "doc_id": f"{spec['name']}:{row.get('id', i)}",
            "source": spec.get("source", "wikipedia"),
            "collection": spec["name"],
            "title": title,
            "text": text if text.startswith("#") else f"# {title}\n\n{text}",
            "url": str(row.get("url", "")),
            "license": "see dataset card",
            "attribution": f'"{title}" from Hugging Face dataset {spec["path"]}.',
            "meta": {"row": i},
        }
