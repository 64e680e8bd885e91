"""Content hashes of code, for rerun decisions and resume fingerprints.

``code_hash("scripts/train_gist.py")`` hashes a script together with every ``gistpoc`` module it imports,
transitively (imports inside functions included, and the package ``__init__`` files an import executes), plus the
data files those modules read (the report template, the config schema). Each module enters as its syntax tree, so
comments and formatting do not change the hash; any change to code that runs does. The workflow gives each rule
the hash of its script as a parameter: an edit reruns exactly the rules whose code changed, and a copied tree (new
mtimes, same files) reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gistpoc"
# files a module reads at run time, hashed with it (raw bytes)
DATA_FILES = {
    "gistpoc/config.py": ["schemas/config.schema.yaml"],
    "gistpoc/report/build.py": ["gistpoc/report/report.html.j2"],
}


def _module_file(dotted: str) -> Path | None:
    """gistpoc.a.b -> gistpoc/a/b.py or gistpoc/a/b/__init__.py (None if neither exists)."""
    base = ROOT.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _package_inits(dotted: str) -> list[Path]:
    """The __init__.py files importing ``dotted`` executes (gistpoc/__init__.py, gistpoc/a/__init__.py, ...)."""
    parts = dotted.split(".")
    out = []
    for i in range(1, len(parts)):
        f = ROOT.joinpath(*parts[:i], "__init__.py")
        if f.is_file():
            out.append(f)
    return out


def _dotted_of(path: Path) -> str | None:
    rel = path.resolve().relative_to(ROOT)
    if rel.parts[0] != PACKAGE:
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[Path]:
    """The gistpoc module files one file imports directly (absolute and relative imports, at any depth)."""
    return set(_imports_cached(path, path.stat().st_mtime_ns))


@lru_cache(maxsize=None)
def _imports_cached(path: Path, mtime_ns: int) -> frozenset[Path]:  # parsed once per process (the workflow asks per rule)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _dotted_of(path)
    is_pkg = path.name == "__init__.py"
    found: set[Path] = set()

    def add(dotted: str) -> None:
        f = _module_file(dotted)
        if f is not None:
            found.add(f)
        found.update(_package_inits(dotted))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                if here is None:
                    continue
                pkg = here.split(".") if is_pkg else here.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
                if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                    continue
            add(base)
            for alias in node.names:  # "from gistpoc.x import y": y may be a module
                if _module_file(f"{base}.{alias.name}") is not None:
                    add(f"{base}.{alias.name}")
    return frozenset(found)


def dependencies(path: str | Path, exclude=()) -> list[Path]:
    """``path`` and every gistpoc module it imports, transitively, plus their data files; sorted. ``exclude``: module
    files (repository-relative) not followed, e.g. the Q&A backends a config does not use."""
    start = (ROOT / path).resolve()
    skip = {(ROOT / e).resolve() for e in exclude}
    seen: set[Path] = set()
    todo = [start]
    while todo:
        f = todo.pop()
        if f in seen or f in skip:
            continue
        seen.add(f)
        todo.extend(_imports(f) - seen)
    data = {ROOT / d for f in seen for d in DATA_FILES.get(str(f.relative_to(ROOT)), [])}
    return sorted(seen | data)


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int) -> bytes:
    if path.suffix == ".py":
        body = ast.dump(ast.parse(path.read_text(encoding="utf-8")), annotate_fields=True, include_attributes=False).encode()
    else:
        body = path.read_bytes()
    return hashlib.sha256(body).digest()


def code_hash(path: str | Path, exclude=()) -> str:
    """Content hash (16 hex digits) of a script or module and everything it imports from gistpoc (but ``exclude``)."""
    h = hashlib.sha256()
    for f in dependencies(path, exclude):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + _file_digest(f, f.stat().st_mtime_ns))
    return h.hexdigest()[:16]


def files_hash(paths) -> str:
    """Content hash (16 hex digits) of files and folders (walked, sorted), for inputs no rule makes: the raw dumps,
    shipped adapters, a rating sheet. Names relative to the repository root where possible."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def write_manifest(folder, path) -> None:
    """``<dir>.sha256`` beside a directory a rule makes: the sha256 of every file in it, one per line. Readers take it
    as an input, so a remade directory with new content reruns them and a copied one (same content) does not."""
    folder = Path(folder)
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(folder)}"
             for f in sorted(folder.rglob("*")) if f.is_file() and f.name != ".snakemake_timestamp"]
    tmp = Path(f"{path}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
