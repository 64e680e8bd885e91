"""What a finished run publishes: the files of ``docs/results/<run>/`` (the ``publish`` rule).

Layout, the one the committed runs use: ``config.yaml``, ``report.html``, ``summary.csv``, ``passkey_breakdown.csv``,
``corpus_stats.json``, ``reasoning_rating_sheet.csv.gz``, ``predictions/<method>.jsonl.gz`` (``control-<name>``,
``ablation-<name>``, ``engine_check-<method>.eager`` for the extra answer sets), ``training/<name>_<file>`` (each
checkpoint's ``train_log.csv``, ``eval_log.csv``, ``summary.json``, stage 1's ``provenance.json``; names ``gist<N>``,
``stage1-gist<N>``, ``ablation-<name>``), ``engine_check.json``, ``figures/``, ``logs.tar.gz``, the run's questions (``questions.jsonl.gz``, ``qa_issues.json``:
what the question writer kept and dropped), the LLM judge's ``judgments.jsonl.gz`` and ``judge_calibration.json`` when
the run has a judge, and ``provenance.json``
(the commit, the config hash and the sha256 of every file above). A README the authors write beside them is kept.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from gistpoc.utils import atomic_path, git_commit, sha256_file, write_json

TRAINING_FILES = ("train_log.csv", "eval_log.csv", "summary.json", "provenance.json")
# what a republish replaces (a README or notes the authors wrote stay)
MANAGED = ("config.yaml", "report.html", "summary.csv", "passkey_breakdown.csv", "corpus_stats.json", "reasoning_rating_sheet.csv.gz",
           "engine_check.json", "logs.tar.gz", "provenance.json", "predictions", "training", "figures", "questions.jsonl.gz", "qa_issues.json",
           "judgments.jsonl.gz", "judge_calibration.json")


def _gzip(src: Path, dest: Path) -> None:
    """Deterministic gzip (no name, no mtime): a republish of the same answers gives the same bytes."""
    with atomic_path(dest) as tmp, open(src, "rb") as f, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            shutil.copyfileobj(f, gz)


def _copy(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _tar_logs(folders: list[Path], dest: Path) -> None:
    """The rules' logs and benchmarks, sorted, with fixed owners and mtimes."""
    with atomic_path(dest) as tmp, tarfile.open(tmp, "w:gz", compresslevel=9) as tar:
        for folder in folders:
            for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
                if p.is_file():
                    info = tar.gettarinfo(str(p), arcname=str(p))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    with open(p, "rb") as f:
                        tar.addfile(info, io.BytesIO(f.read()))


def publish(dest: str | Path, *, config: Path, report: Path, summary: Path, passkey: Path, stats: Path, rating_sheet: Path,
            predictions: dict[str, Path], training: dict[str, Path], figures: list[Path] = (), engine_check: Path | None = None,
            logs: list[Path] = (), config_hash: str = "", extra: dict[str, Path] | None = None) -> dict:
    """Write the run's published folder at ``dest``; returns its provenance (also written as provenance.json).

    ``predictions``: published name -> a predictions/answers JSONL; ``training``: published prefix -> a checkpoint
    or adapter folder (its TRAINING_FILES that exist are copied); ``extra``: published name -> file (``.jsonl.gz`` names
    are gzipped from a JSONL), e.g. the questions and the judge's files."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in MANAGED:  # what an earlier publish wrote; the README stays
        p = dest / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for src, name in ((config, "config.yaml"), (report, "report.html"), (summary, "summary.csv"), (passkey, "passkey_breakdown.csv"),
                      (stats, "corpus_stats.json")):
        _copy(Path(src), dest / name)
    _gzip(Path(rating_sheet), dest / "reasoning_rating_sheet.csv.gz")
    for name, src in sorted(predictions.items()):
        _gzip(Path(src), dest / "predictions" / f"{name}.jsonl.gz")
    for prefix, folder in sorted(training.items()):
        for f in TRAINING_FILES:
            if (Path(folder) / f).exists():
                _copy(Path(folder) / f, dest / "training" / f"{prefix}_{f}")
    for fig in figures:
        _copy(Path(fig), dest / "figures" / Path(fig).name)
    if engine_check is not None:
        _copy(Path(engine_check), dest / "engine_check.json")
    for name, src in sorted((extra or {}).items()):
        (_gzip if name.endswith(".gz") else _copy)(Path(src), dest / name)
    if logs:
        _tar_logs([Path(p) for p in logs], dest / "logs.tar.gz")
    files = sorted(p for p in dest.rglob("*") if p.is_file() and p.name not in ("provenance.json", "README.md"))
    prov = {"commit": git_commit(), "config_hash": config_hash, "published_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": {str(p.relative_to(dest)): sha256_file(p) for p in files}}
    write_json(dest / "provenance.json", prov)
    return prov
