"""Wikipedia: MediaWiki XML exports (streamed) and WikiText raw files."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterator
from xml.etree import ElementTree as ET

from gistpoc.data.sources.common import REPLACEMENT, _collection, _drop_trailing_sections, _open_binary, _tidy, document
from gistpoc.utils import IssueLog, open_text


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
    return document(
        doc_id=f"{dbname}:{page_id or url_title}",
        source="wikipedia",
        collection=_collection(path),
        title=title,
        text=f"# {title}\n\n{text}",
        url=f"https://en.wikipedia.org/w/index.php?title={url_title}&oldid={rev_id}",
        license="CC BY-SA / GFDL (Wikipedia)",
        attribution=f'Wikipedia contributors, "{title}", revision {rev_id} ({ts}).',
        meta={"page_id": page_id, "revision_id": rev_id, "timestamp": ts},
    )


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
        return document(
            doc_id=f"wikitext:{re.sub(r'[^A-Za-z0-9]+', '_', title).strip('_')}",
            source="wikipedia",
            collection=_collection(path),
            title=title,
            text=f"# {title}\n\n{text}",
            url=f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}",
            license="CC BY-SA 3.0 / GFDL (WikiText, Merity et al. 2016)",
            attribution=f'Wikipedia contributors, "{title}", via WikiText-2 (Merity et al. 2016).',
            meta={"line": start_line},
        )

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
