"""Parsers on the real bundled dumps and on corrupted copies: bad input is counted, good records survive."""

from __future__ import annotations

import bz2
import gzip
import json

import pytest

from gistpoc.data import extract as E
from gistpoc.utils import IssueLog
from tests.conftest import RESOURCES

WIKI_011 = RESOURCES / "raw/wikipedia/enwiki-20250201-tiny_dump.xml.bz2"
WIKI_010 = RESOURCES / "raw/wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKITEXT = RESOURCES / "raw/wikitext/wikitext-2-raw-v1.wiki.test.raw.bz2"
UNARXIVE = RESOURCES / "raw/arxiv/unarXive2022-open-subset.arXiv_src_2212_086.jsonl.gz"
ARXIV_META = RESOURCES / "raw/arxiv/arxiv-metadata-oai-snapshot.head200.jsonl.gz"
TECHDOCS = RESOURCES / "raw/techdocs/python311"


def test_mediawiki_011_articles_only_with_headings():
    issues = IssueLog()
    docs = list(E.iter_mediawiki_xml(WIKI_011, issues))
    titles = {d["title"] for d in docs}
    assert titles == {"A", "Abraham Lincoln", "Achilles", "Alabama", "Albedo", "Anarchism"}  # ns 0, no redirects
    albedo = next(d for d in docs if d["title"] == "Albedo")
    assert "\n## " in albedo["text"] and "{{" not in albedo["text"] and "[[" not in albedo["text"] and "<ref" not in albedo["text"]
    assert "## References" not in albedo["text"]


@pytest.mark.slow
def test_mediawiki_010_streams_the_2016_dump():
    docs = list(E.iter_mediawiki_xml(WIKI_010, IssueLog()))
    assert len(docs) == 106 and all(d["source"] == "wikipedia" and d["doc_id"].startswith("enwiki:") for d in docs)


def test_truncated_bz2_keeps_earlier_pages(tmp_path):
    raw = bz2.decompress(WIKI_011.read_bytes())
    cut = raw[: int(len(raw) * 0.6)]
    bad = tmp_path / "truncated.xml.bz2"
    bad.write_bytes(bz2.compress(cut, compresslevel=1)[:-40])  # XML cut mid-page and a damaged last bz2 block
    issues = IssueLog()
    docs = list(E.iter_mediawiki_xml(bad, issues))
    assert 1 <= len(docs) < 6
    assert issues.items and ("truncated" in issues.items[0]["reason"] or "malformed" in issues.items[0]["reason"])
    assert issues.items[0]["file"] == str(bad)


def test_non_utf8_byte_and_empty_page_are_counted(tmp_path):
    raw = bz2.decompress(WIKI_011.read_bytes())
    i = raw.index(b"Albedo is")
    raw = raw[:i] + b"\xff\xfe" + raw[i:]
    j = raw.index(b"<title>Achilles</title>")
    k = raw.index(b"<text", j)
    k_end = raw.index(b"</text>", k)
    raw = raw[: raw.index(b">", k) + 1] + raw[k_end:]   # Achilles page with empty text
    p = tmp_path / "dirty.xml"
    p.write_bytes(raw)
    issues = IssueLog()
    docs = list(E.iter_mediawiki_xml(p, issues))
    assert {d["title"] for d in docs} == {"A", "Abraham Lincoln", "Alabama", "Albedo", "Anarchism"}
    reasons = issues.counts()
    assert reasons.get("non-UTF-8 bytes") == 1 and reasons.get("empty page") == 1
    assert any("Achilles" in str(it["where"]) for it in issues.items)


def test_wikitext_raw_articles():
    docs = list(E.iter_wikitext_raw(WIKITEXT, IssueLog()))
    assert len(docs) >= 60
    first = docs[0]
    assert first["title"] == "Robert Boulter" and "## Career" in first["text"]
    assert " @-@ " not in first["text"] and "guest-starring" in first["text"] and '"Craig"' in first["text"]


def test_unarxive_full_text_resolves_placeholders():
    docs = list(E.iter_unarxive(UNARXIVE, IssueLog()))
    assert len(docs) == 49
    text = docs[0]["text"]
    assert "## Abstract" in text and "{{formula:" not in text and "{{cite:" not in text and "pdfborder" not in text
    assert docs[0]["meta"]["categories"]


def test_malformed_json_line_is_counted(tmp_path):
    lines = gzip.open(UNARXIVE, "rt").read().splitlines()[:3]
    p = tmp_path / "papers.jsonl"
    p.write_text("\n".join([lines[0], '{"paper_id": "broken", ', lines[1], "[1, 2]", lines[2]]) + "\n")
    issues = IssueLog()
    docs = list(E.iter_unarxive(p, issues))
    assert len(docs) == 3
    assert [it["where"] for it in issues.items] == [2, 4]
    assert issues.items[0]["reason"].startswith("malformed JSON")


def test_arxiv_kaggle_metadata():
    issues = IssueLog()
    docs = list(E.iter_arxiv_metadata(ARXIV_META, issues))
    assert len(docs) == 200 and docs[0]["doc_id"] == "arxiv:0704.0001"
    assert docs[0]["meta"]["categories"] == "hep-ph" and "## Abstract" in docs[0]["text"]


def test_techdocs_rst_markdown_html(tmp_path):
    docs = list(E.iter_techdocs(TECHDOCS, IssueLog()))
    assert len(docs) > 100
    d = next(d for d in docs if d["meta"]["path"] == "library/json.rst")
    assert d["title"].startswith(":mod:") is False and "json" in d["title"]
    assert ":synopsis:" not in d["text"] and ":func:`" not in d["text"] and ".. function::" not in d["text"]
    (tmp_path / "guide.md").write_text("# Guide\n\nSee [the docs](http://x) for more.\n")
    (tmp_path / "page.html").write_text("<html><title>Page</title><body><h2>Part</h2><p>Hello <b>world</b></p><script>x()</script></body></html>")
    (tmp_path / "empty.rst").write_text("\n\n")
    issues = IssueLog()
    extra = {d["meta"]["path"]: d for d in E.iter_techdocs(tmp_path, issues)}
    assert "the docs for more" in extra["guide.md"]["text"] and "## Part" in extra["page.html"]["text"] and "x()" not in extra["page.html"]["text"]
    assert issues.counts() == {"empty page": 1}


def test_missing_techdocs_dir_is_reported(tmp_path):
    issues = IssueLog()
    assert list(E.iter_techdocs(tmp_path / "nope", issues)) == []
    assert issues.items[0]["reason"].startswith("missing input")


def test_huggingface_datasets_local_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    wiki = list(E.iter_mediawiki_xml(WIKI_011, IssueLog()))
    table = pa.table({"id": [d["doc_id"] for d in wiki], "title": [d["title"] for d in wiki], "text": [d["text"].split("\n\n", 1)[1] for d in wiki], "url": ["u"] * len(wiki)})
    pq.write_table(table, tmp_path / "train-00000.parquet")
    spec = {"name": "enwiki_parquet", "path": "parquet", "data_files": str(tmp_path / "train-00000.parquet"), "split": "train", "text_field": "text", "title_field": "title", "source": "wikipedia", "max_records": 100}
    docs = list(E.iter_hf_dataset(spec, IssueLog()))
    assert [d["title"] for d in docs] == [d["title"] for d in wiki]
    assert docs[0]["text"].startswith(f"# {wiki[0]['title']}")
    with pytest.raises(KeyError, match="column 'body'"):
        list(E.iter_hf_dataset({**spec, "text_field": "body"}, IssueLog()))


def test_extract_script_writes_issues(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text(gzip.open(UNARXIVE, "rt").readline() + "{not json\n")
    out, issues = tmp_path / "out.jsonl", tmp_path / "issues.json"
    subprocess.run([sys.executable, "scripts/extract_source.py", "--unarxive", str(bad), "--out", str(out), "--issues", str(issues)], check=True, cwd=RESOURCES.parent)
    assert len(out.read_text().splitlines()) == 1
    rep = json.loads(issues.read_text())
    assert rep["n_skipped"] == 1 and rep["items"][0]["where"] == 2
