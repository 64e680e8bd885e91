"""Small helpers shared by every stage: atomic writes, JSONL, logging, hashing, seeding, the host environment."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("gistpoc")


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_file`` (the rule's ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def dumps_canonical(obj: Any) -> str:
    """JSON with sorted keys and no NaN: byte-identical for equal inputs."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically, one canonical JSON object per line; return the count."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(dumps_canonical(rec) + "\n")
                n += 1
    return n


def open_text(path: str | os.PathLike, errors: str = "strict"):
    """Open plain, .gz or .bz2 text files by suffix."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors=errors)
    if path.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rt", encoding="utf-8", errors=errors)
    return open(path, encoding="utf-8", errors=errors)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file written by this project (strict: any bad line is an error naming it)."""
    out = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks (model parts are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, n: int = 16) -> str:
    return sha256_text(dumps_canonical(obj))[:n]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch. (No result depends on ``hash()``: setting PYTHONHASHSEED here would only
    reach child processes, so it is not done.)"""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


# libraries whose versions change the results; recorded wherever a stage runs
RESULT_LIBS = ["torch", "transformers", "peft", "bitsandbytes", "chromadb", "sentence-transformers", "snakemake", "datasets", "openai"]


def host_environment() -> dict:
    """Where this process runs: host, GPU, the cores it may use (a SLURM job's allocation, not the node's),
    OS, Python and the versions of RESULT_LIBS. Stages that measure write it beside their results, so a report
    assembled elsewhere (a SLURM login node, another machine) still says where the numbers came from."""
    import platform
    import socket
    from importlib import metadata

    versions = {}
    for lib in RESULT_LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": socket.gethostname(), "gpu": gpu, "cores": cores, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def is_oom(err: BaseException) -> bool:
    """True for CUDA out-of-memory and for CPU allocation failures (MemoryError, "can't allocate memory")."""
    import torch

    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class IssueLog:
    """Counts and keeps bad-input events (file, line, reason) so a stage can report them."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, file: str, where: str | int | None, reason: str) -> None:
        self.items.append({"file": str(file), "where": where, "reason": reason})
        log.warning("skipped %s%s: %s", file, f":{where}" if where is not None else "", reason)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in self.items:
            key = it["reason"].split(":")[0]
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {"n_skipped": len(self.items), "by_reason": self.counts(), "items": self.items}


def records_hash(records: list[dict]) -> str:
    """Content hash of dataset records (every field), for fingerprints of what was trained on."""
    return sha256_text("\n".join(dumps_canonical(r) for r in records))[:16]


def git_commit() -> str:
    """The commit of the working tree (``GISTPOC_GIT_COMMIT`` where the tree's .git is absent or not the run's),
    marked when tracked files differ from it."""
    import subprocess

    commit = os.environ.get("GISTPOC_GIT_COMMIT")
    if commit:
        return commit
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip())
        return commit + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
