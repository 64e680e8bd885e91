"""Text at volume for stage 1: the documentation that Debian packages ship, read straight from their ``.deb`` files.

A lock file (``resources/volume/debian-docs.tsv``) names each package, its exact version, the sha256 and size of its
``.deb``, its licence, and which members of it are documentation (``include`` / ``exclude`` globs over the paths inside
the package). ``fetch`` brings the ``.deb`` files with ``apt-get download PACKAGE=VERSION`` and checks every byte count
and hash; ``iter_debian_docs`` reads a ``.deb`` (an ``ar`` archive holding ``data.tar.xz``, ``.gz`` or plain ``.tar``)
without unpacking it and yields one document per member page: reST / plain text, HTML, Markdown and Perl POD, each
possibly gzipped, converted like the technical docs (``techdocs``).

    python -m gistpoc.data.sources.debian fetch --lock resources/volume/debian-docs.tsv --dir resources/volume/debs
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import gzip
import io
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gistpoc.data.sources.common import REPLACEMENT, _tidy, document
from gistpoc.data.sources.techdocs import html_to_text, markdown_to_text, rst_to_text
from gistpoc.utils import IssueLog, sha256_file

LOCK_FIELDS = ("package", "version", "sha256", "bytes", "license", "include", "exclude")


@dataclass(frozen=True)
class Package:
    """One lock-file row: the package, its exact version and .deb hash, and which of its members are documentation."""

    package: str
    version: str
    sha256: str
    bytes: int
    license: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @property
    def deb_name(self) -> str:
        """The file name ``apt-get download`` gives it (an epoch's ``:`` written ``%3a``)."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"

    def wants(self, member: str) -> bool:
        return any(fnmatch.fnmatch(member, g) for g in self.include) and not any(fnmatch.fnmatch(member, g) for g in self.exclude)


def read_lock(path: str | Path) -> list[Package]:
    """The lock file's packages; ValueError naming the file and line for a malformed row."""
    path = Path(path)
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        lines = [(i, ln) for i, ln in enumerate(fh, 1) if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader((ln for _, ln in lines), delimiter="\t")
    if tuple(reader.fieldnames or ()) != LOCK_FIELDS:
        raise ValueError(f"{path}: the header must be {' '.join(LOCK_FIELDS)} (tab-separated), not {reader.fieldnames}")
    for (lineno, _), row in zip(lines[1:], reader):
        try:
            if not re.fullmatch(r"[0-9a-f]{64}", row["sha256"] or ""):
                raise ValueError(f"sha256 {row['sha256']!r} is not 64 hex digits")
            if not row["include"]:
                raise ValueError("include names no member")
            rows.append(Package(row["package"], row["version"], row["sha256"], int(row["bytes"]), row["license"],
                                tuple(g for g in row["include"].split(",") if g), tuple(g for g in (row["exclude"] or "").split(",") if g)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}:{lineno}: {err}") from None
    if not rows:
        raise ValueError(f"{path}: no packages")
    return rows


def deb_paths(lock: str | Path, folder: str | Path) -> list[str]:
    """Where each locked package's .deb lies in ``folder`` (what the extraction reads)."""
    return [str(Path(folder) / p.deb_name) for p in read_lock(lock)]


def verify(pkg: Package, path: Path) -> None:
    """ValueError unless ``path`` is the locked .deb, byte for byte."""
    size = path.stat().st_size
    if size != pkg.bytes or sha256_file(path) != pkg.sha256:
        raise ValueError(f"{path}: not the locked {pkg.package} {pkg.version} ({size} bytes, expected {pkg.bytes} with sha256 "
                         f"{pkg.sha256[:12]}...); delete it and fetch again")


def fetch(lock: str | Path, folder: str | Path) -> list[Path]:
    """Every locked .deb in ``folder``: kept when already there and verified, else ``apt-get download PACKAGE=VERSION``
    (after one ``apt-get update`` if apt does not know the version yet), then verified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out, updated = [], False
    for pkg in read_lock(lock):
        path = folder / pkg.deb_name
        if not path.exists():
            download = ["apt-get", "download", f"{pkg.package}={pkg.version}"]
            res = subprocess.run(download, cwd=folder, capture_output=True, text=True)
            if res.returncode != 0 and not updated:  # apt may not know the version yet: update its lists once, try again
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
                updated = True
                res = subprocess.run(download, cwd=folder, capture_output=True, text=True)
            if res.returncode != 0 or not path.exists():
                raise RuntimeError(f"{lock}: apt-get download {pkg.package}={pkg.version} failed ({res.stderr.strip()[-300:]}); "
                                   "a version replaced by a Debian update is no longer served: update its row in the lock file")
        verify(pkg, path)
        out.append(path)
    return out


def _ar_members(data: bytes, path: Path) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{path}: not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(data):
        head = data[pos : pos + 60]
        name, size = head[:16].decode("ascii", "replace").strip().rstrip("/"), head[48:58].decode("ascii", "replace").strip()
        if not size.isdigit() or head[58:60] != b"`\n":
            raise ValueError(f"{path}: corrupt ar member header at byte {pos}")
        body = data[pos + 60 : pos + 60 + int(size)]
        if len(body) != int(size):
            raise ValueError(f"{path}: truncated ({name} ends past the file)")
        yield name, body
        pos += 60 + int(size) + int(size) % 2


def read_deb(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(member path without ``./``, bytes) of every regular file in a .deb's data archive."""
    path = Path(path)
    for name, body in _ar_members(path.read_bytes(), path):
        if not name.startswith("data.tar"):
            continue
        mode = {"data.tar.xz": "r:xz", "data.tar.gz": "r:gz", "data.tar": "r:"}.get(name)
        if mode is None:
            raise ValueError(f"{path}: {name} is compressed in a way this reader does not take (xz, gz or none)")
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode=mode) as tar:
                for info in tar:
                    if info.isfile():
                        yield info.name.removeprefix("./"), tar.extractfile(info).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{path}: corrupt {name}: {err}") from None
        return
    raise ValueError(f"{path}: no data.tar member")


_POD_CODES = re.compile(r"[BCEFIJLSXZ]<(?:<+\s(.*?)\s>+|([^<>]*))>")


def _code_text(m: re.Match) -> str:
    """The text a POD formatting code shows (``L<text|target>``: its text)."""
    return (m.group(1) or m.group(2)).split("|")[0]


def pod_to_text(src: str) -> tuple[str, str]:
    """Perl POD -> (title, text): ``=head`` lines become headings, other commands are dropped, formatting codes keep
    their text (``L<text|target>`` its text)."""
    out, title, skip = [], "", False
    for ln in src.split("\n"):
        if ln.startswith("="):
            cmd, _, rest = ln.partition(" ")
            skip = cmd in ("=begin", "=for") and not rest.startswith("text")
            if cmd == "=end":
                skip = False
            elif cmd.startswith("=head"):
                level = int(cmd[5:] or 1) if cmd[5:].isdigit() else 1
                head = _POD_CODES.sub(_code_text, rest).strip()
                if head == "NAME":
                    continue
                out.append(f"\n{'#' * min(level + 1, 4)} {head}\n")
            elif cmd == "=item" and rest.strip():
                out.append(_POD_CODES.sub(_code_text, rest).strip())
            continue
        if skip:
            continue
        text = ln
        for _ in range(3):  # nested codes, innermost first
            text = _POD_CODES.sub(lambda m: _code_text(m).replace("/", " ").strip('"'), text)
        if not title and out and out[-1] == "" and " - " in text:
            title = text.strip()
        out.append(text)
    return title, _tidy("\n".join(out))


CONVERTERS = {".rst": rst_to_text, ".txt": rst_to_text, ".html": html_to_text, ".htm": html_to_text, ".md": markdown_to_text,
              ".pod": pod_to_text}


def _page(deb: Path, member: str, raw: bytes, issues: IssueLog) -> tuple[str, str] | None:
    """(title, text) of one member page, converted by its format (gunzipped first); None, with the reason logged, for a
    format without a converter, a corrupt gzip member or a page with no text."""
    convert = CONVERTERS.get(Path(member.removesuffix(".gz")).suffix.lower())
    reason = "no converter for this format" if convert is None else ""
    if convert is not None and member.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            reason = f"corrupt gzip member: {err}"
    if reason:
        issues.add(deb, member, reason)
        return None
    src = raw.decode("utf-8", errors="replace")
    if REPLACEMENT in src:
        issues.add(deb, member, f"non-UTF-8 bytes: {src.count(REPLACEMENT)} replaced")
    title, text = convert(src)
    if text.strip():
        return title, text
    issues.add(deb, member, "empty page: no text")
    return None


def iter_debian_docs(deb: str | Path, pkg: Package, issues: IssueLog) -> Iterator[dict]:
    """One document per documentation member of a locked .deb (verified first): its text converted by format."""
    deb = Path(deb)
    try:
        verify(pkg, deb)
        members = sorted((m, raw) for m, raw in read_deb(deb) if pkg.wants(m))   # only the pages are kept in memory
    except (OSError, ValueError) as err:
        issues.add(deb, None, f"unreadable package: {err}")
        return
    if not members:
        issues.add(deb, None, f"no member matches include {','.join(pkg.include)}")
    for member, raw in members:
        name = member.removesuffix(".gz")
        page = _page(deb, member, raw, issues)
        if page is None:
            continue
        title = page[0] or Path(name).stem
        text = page[1]
        yield document(
            doc_id=f"debian:{pkg.package}:{name}",
            source="debian_docs",
            collection=pkg.package,
            title=title,
            text=text if text.lstrip().startswith("#") else f"# {title}\n\n{text}",
            url=f"deb:{pkg.package}={pkg.version}/{member}",
            license=pkg.license,
            attribution=f'"{title}" ({member}) from the Debian package {pkg.package} {pkg.version}.',
            meta={"path": member, "package": pkg.package, "version": pkg.version},
        )


def iter_locked(lock: str | Path, folder: str | Path, issues: IssueLog) -> Iterator[dict]:
    """Every locked package's documents, package by package."""
    for pkg in read_lock(lock):
        yield from iter_debian_docs(Path(folder) / pkg.deb_name, pkg, issues)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["fetch", "paths"])
    ap.add_argument("--lock", required=True)
    ap.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    try:
        paths = fetch(args.lock, args.dir) if args.command == "fetch" else deb_paths(args.lock, args.dir)
    except (OSError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
