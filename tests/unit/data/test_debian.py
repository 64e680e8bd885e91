"""Stage 1's text at volume (issue 27): Debian documentation pages read from real .deb files (built here by dpkg-deb
from the repo's real documentation, and one fetched from Debian by apt-get), checked against the lock, converted by
format, and kept away from validation and test documents."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from gistpoc.data.sources.debian import Package, fetch, iter_debian_docs, pod_to_text, read_deb, read_lock
from gistpoc.data.volume import train_only
from gistpoc.utils import IssueLog, read_jsonl
from tests.conftest import ROOT

DOCS = ROOT / "resources" / "raw" / "techdocs" / "python311"
POD = """=head1 NAME

perldemo - how B<Perl> reads a C<while> loop

=head1 DESCRIPTION

A loop runs while its condition holds; see L<perlsyn/"Compound Statements"> and I<perlop>.

=begin html

<p>only for HTML readers</p>

=end html

=cut
"""
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb (Debian's dpkg) is not installed")


def build_deb(tmp: Path, compression: str = "xz") -> Path:
    """A real Debian package made by dpkg-deb from the repo's Python docs (one gzipped, as Debian ships reST), an HTML
    page, a POD page, a picture and a page in an excluded folder."""
    root = tmp / "pkg"
    doc = root / "usr/share/doc/demo-doc"
    (doc / "html").mkdir(parents=True)
    (doc / "skip").mkdir()
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: demo-doc\nVersion: 1:1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\n"
                                         "Description: test\n test\n")
    (doc / "about.rst").write_bytes((DOCS / "about.rst").read_bytes())
    (doc / "fractions.rst.gz").write_bytes(gzip.compress((DOCS / "library" / "fractions.rst").read_bytes()))
    (doc / "html" / "page.html").write_text("<html><head><title>Loops</title><script>x()</script></head><body><h1>Loops</h1>"
                                            "<p>A <b>loop</b> repeats.</p></body></html>")
    (doc / "perldemo.pod").write_text(POD)
    (doc / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (doc / "skip" / "old.rst").write_text("Old\n===\n\nNot wanted.\n")
    out = tmp / "demo-doc_1%3a1.0-1_all.deb"
    subprocess.run(["dpkg-deb", f"-Z{compression}", "--root-owner-group", "--build", str(root), str(out)], check=True, capture_output=True)
    return out


def lock_row(deb: Path, **over) -> Package:
    fields = {"package": "demo-doc", "version": "1:1.0-1", "sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
              "bytes": deb.stat().st_size, "license": "PSF-2.0", "include": ("usr/share/doc/demo-doc/*",),
              "exclude": ("*/skip/*",)} | over
    return Package(**fields)


@needs_dpkg
@pytest.mark.parametrize("compression", ["xz", "gzip"])
def test_pages_come_out_of_the_deb_converted_by_format(tmp_path, compression):
    deb = build_deb(tmp_path, compression)
    pkg = lock_row(deb)
    assert deb.name == pkg.deb_name                       # the name apt-get download gives it, epoch written %3a
    issues = IssueLog()
    docs = {d["meta"]["path"].rsplit("/", 1)[-1]: d for d in iter_debian_docs(deb, pkg, issues)}
    assert sorted(docs) == ["about.rst", "fractions.rst.gz", "page.html", "perldemo.pod"]   # not the excluded folder
    assert [i["where"] for i in issues.items] == ["usr/share/doc/demo-doc/logo.png"]        # included, but no text format
    rst = docs["fractions.rst.gz"]
    assert rst["title"] == "fractions --- Rational numbers" and rst["text"].startswith("# fractions --- Rational numbers\n")
    assert rst["doc_id"] == "debian:demo-doc:usr/share/doc/demo-doc/fractions.rst" and rst["license"] == "PSF-2.0"
    assert rst["url"] == "deb:demo-doc=1:1.0-1/usr/share/doc/demo-doc/fractions.rst.gz" and rst["source"] == "debian_docs"
    html = docs["page.html"]["text"]
    assert "A loop repeats" in " ".join(html.split()) and "x()" not in html and "<b>" not in html
    pod = docs["perldemo.pod"]
    assert pod["title"] == "perldemo - how Perl reads a while loop"
    assert "see perlsyn Compound Statements" in pod["text"].replace('"', "") and "I<" not in pod["text"]
    assert "only for HTML readers" not in pod["text"]


def test_pod_keeps_the_text_of_formatting_codes():
    title, text = pod_to_text(POD)
    assert title.startswith("perldemo") and "## DESCRIPTION" in text and "B<" not in text and "=cut" not in text


@needs_dpkg
def test_a_package_that_is_not_the_locked_one_is_refused_by_name(tmp_path):
    deb = build_deb(tmp_path)
    pkg = lock_row(deb)
    altered = bytearray(deb.read_bytes())
    altered[-1] ^= 1
    deb.write_bytes(bytes(altered))
    issues = IssueLog()
    assert list(iter_debian_docs(deb, pkg, issues)) == []
    assert issues.items[0]["file"] == str(deb) and "not the locked demo-doc 1:1.0-1" in issues.items[0]["reason"]
    truncated = tmp_path / "cut.deb"
    truncated.write_bytes(bytes(altered[:200]))
    with pytest.raises(ValueError, match=r"cut\.deb: (truncated|corrupt)"):
        list(read_deb(truncated))
    (tmp_path / "x.deb").write_text("not a package")
    with pytest.raises(ValueError, match=r"x\.deb: not a Debian package"):
        list(read_deb(tmp_path / "x.deb"))


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_dpkg
def test_the_extraction_script_writes_the_pages_and_stops_on_a_missing_package(tmp_path):
    deb = build_deb(tmp_path)
    pkg = lock_row(deb)
    lock = tmp_path / "lock.tsv"
    lock.write_text("\t".join(("package", "version", "sha256", "bytes", "license", "include", "exclude")) + "\n" +
                    "\t".join((pkg.package, pkg.version, pkg.sha256, str(pkg.bytes), pkg.license, ",".join(pkg.include), ",".join(pkg.exclude))) + "\n")
    script = load_script("extract_debian_docs")
    args = argparse.Namespace(lock=lock, dir=tmp_path, out=tmp_path / "pages.jsonl", issues=tmp_path / "issues.json")
    script.main(args)
    assert len(read_jsonl(args.out)) == 4
    deb.unlink()
    with pytest.raises(RuntimeError, match=r"demo-doc_1%3a1\.0-1_all\.deb: unreadable package"):
        script.main(args)


def test_a_lock_error_names_the_file_and_line(tmp_path):
    lock = tmp_path / "lock.tsv"
    head = "package\tversion\tsha256\tbytes\tlicense\tinclude\texclude\n"
    lock.write_text("# comment\n" + head + "a\t1\tabc\t10\tMIT\tusr/*\t\n")
    with pytest.raises(ValueError, match=r"lock\.tsv:3: sha256 'abc' is not 64 hex digits"):
        read_lock(lock)
    lock.write_text(head.replace("license", "licence"))
    with pytest.raises(ValueError, match="the header must be"):
        read_lock(lock)
    rows = read_lock(ROOT / "resources" / "volume" / "debian-docs.tsv")
    assert len(rows) == 14 and all(len(r.sha256) == 64 and r.bytes > 0 and r.include for r in rows)
    assert sum(r.bytes for r in rows) > 100e6 and all((ROOT / "resources/volume/licenses" / f"{r.package}.copyright").exists() for r in rows)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get (Debian's apt) is not installed")
def test_fetch_brings_the_locked_package_from_debian_and_checks_it(tmp_path):
    """The real apt-get against Debian's archive: a small package of the stable release, its hash checked."""
    lock = tmp_path / "lock.tsv"
    lock.write_text("package\tversion\tsha256\tbytes\tlicense\tinclude\texclude\n"
                    "cmake-doc\t3.25.1-1\t6e805a758ffed87cc7ea234cf0a7a1bb8ae78b93d8b5783e7fb989a6320f8133\t2198792\tBSD-3-Clause\t"
                    "usr/share/doc/cmake-data/html/_sources/*.txt\t\n")
    [path] = fetch(lock, tmp_path / "debs")
    assert path.name == "cmake-doc_3.25.1-1_all.deb" and path.stat().st_size == 2198792
    docs = list(iter_debian_docs(path, read_lock(lock)[0], IssueLog()))
    assert len(docs) > 1000 and any(d["title"] == "add_compile_definitions" for d in docs)
    path.write_bytes(path.read_bytes()[:-1])                  # a damaged copy is not taken as the package
    with pytest.raises(ValueError, match="not the locked cmake-doc"):
        fetch(lock, tmp_path / "debs")


def test_a_page_sharing_a_passage_with_a_held_out_document_is_dropped():
    words = [f"w{i}" for i in range(40)]
    documents = [{"doc_id": "test1", "split": "test", "text": " ".join(words)},
                 {"doc_id": "train1", "split": "train", "text": "alpha beta " * 20}]
    pages = [{"doc_id": "p13", "collection": "a", "text": "intro " + " ".join(words[5:18]) + " outro"},      # 13 words: dropped
             {"doc_id": "p12", "collection": "a", "text": "intro " + " ".join(words[5:17]) + " outro"},      # 12: kept
             {"doc_id": "ptrain", "collection": "b", "text": "alpha beta " * 20}]                              # a training doc's: kept
    kept, dropped = train_only(pages, documents, 13)
    assert [p["doc_id"] for p in kept] == ["p12", "ptrain"]
    assert dropped == [{"doc_id": "p13", "collection": "a", "shares_with": "test1"}]


def test_build_text_volume_counts_tokens_per_package(tmp_path, model_dir):
    import json

    from gistpoc.utils import write_jsonl

    script = load_script("build_text_volume")
    text = (DOCS / "about.rst").read_text()
    write_jsonl(tmp_path / "pages.jsonl", [{"doc_id": "d:a", "collection": "a", "license": "MIT", "text": text},
                                           {"doc_id": "d:b", "collection": "b", "license": "BSD", "text": text + " more"},
                                           {"doc_id": "d:c", "collection": "b", "license": "BSD", "text": "held out " + text}])
    write_jsonl(tmp_path / "docs.jsonl", [{"doc_id": "t", "split": "test", "text": "held out " + text[:200]}])
    script.main(argparse.Namespace(extracted=tmp_path / "pages.jsonl", documents=tmp_path / "docs.jsonl", model_ref=str(model_dir), ngram=13,
                                   out=tmp_path / "train.jsonl", stats=tmp_path / "stats.json"))
    assert [r["doc_id"] for r in read_jsonl(tmp_path / "train.jsonl")] == []   # every page shares the about page's opening
    write_jsonl(tmp_path / "docs.jsonl", [{"doc_id": "t", "split": "test", "text": "an unrelated test document " * 10}])
    script.main(argparse.Namespace(extracted=tmp_path / "pages.jsonl", documents=tmp_path / "docs.jsonl", model_ref=str(model_dir), ngram=13,
                                   out=tmp_path / "train.jsonl", stats=tmp_path / "stats.json"))
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [r["doc_id"] for r in read_jsonl(tmp_path / "train.jsonl")] == ["d:a", "d:b", "d:c"]
    assert stats["packages"]["b"]["pages"] == 2 and stats["packages"]["a"]["license"] == "MIT"
    assert stats["tokens"] == sum(p["tokens"] for p in stats["packages"].values()) > 3 * stats["packages"]["a"]["tokens"] * 0.9
