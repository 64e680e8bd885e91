"""Aggregate scored predictions into one row per method, with bootstrap CIs resampling documents."""

from __future__ import annotations

import csv
import hashlib
import math
import random
from pathlib import Path
from statistics import mean, median

from gistpoc.evaluate.metrics import bootstrap_ci, quantile
from gistpoc.evaluate.passkey import DEPTH_BINS


def _vals(rows, qtype, key):
    sel = [r for r in rows if r["qtype"] == qtype and r["status"] == "ok" and r["scores"].get(key) is not None]
    return [r["scores"][key] for r in sel], [r["doc_id"] for r in sel]


def _with_ci(prefix: str, values, groups, n_boot: int, seed: int) -> dict:
    if not values:
        return {prefix: None, f"{prefix}_lo": None, f"{prefix}_hi": None, f"{prefix}_n": 0}
    lo, hi = bootstrap_ci(values, groups, n_boot, seed)
    return {prefix: mean(values), f"{prefix}_lo": lo, f"{prefix}_hi": hi, f"{prefix}_n": len(values)}


def item_key(row: dict) -> str:
    """A blinded, stable key for an answer (hides the method)."""
    return hashlib.sha256(f"{row['method']}|{row['id']}".encode()).hexdigest()[:12]


def summarize_method(rows: list[dict], threshold: float, n_boot: int, seed: int, judgments: dict | None = None, ratings: dict | None = None) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    out = {"method": rows[0]["method"] if rows else "", "n_items": len(rows), "n_oom": len(rows) - len(ok), "n_documents": len({r["doc_id"] for r in rows})}
    out.update(_with_ci("factual_em", *_vals(rows, "factual", "em"), n_boot, seed))
    out.update(_with_ci("factual_f1", *_vals(rows, "factual", "f1"), n_boot, seed))
    out.update(_with_ci("passkey_acc", *_vals(rows, "passkey", "passkey_correct"), n_boot, seed))
    sims, groups = _vals(rows, "global", "embed_sim")
    out.update(_with_ci("global_proxy_acc", [float(s >= threshold) for s in sims], groups, n_boot, seed))
    out.update(_with_ci("global_embed_sim", sims, groups, n_boot, seed))
    out.update(_with_ci("global_rouge_l", *_vals(rows, "global", "rouge_l"), n_boot, seed))
    out.update(_with_ci("reasoning_rouge_l", *_vals(rows, "reasoning", "rouge_l"), n_boot, seed))
    out.update(_with_ci("reasoning_embed_sim", *_vals(rows, "reasoning", "embed_sim"), n_boot, seed))
    if any("keylike" in r["scores"] for r in ok):   # answers scored before the metric existed (published runs) have no column
        keylike = [r for r in ok if r["qtype"] != "passkey" and r["scores"].get("keylike") is not None]
        out.update(_with_ci("keylike_rate", [r["scores"]["keylike"] for r in keylike], [r["doc_id"] for r in keylike], n_boot, seed))
    for qtype, name in (("global", "global_judge_acc"), ("reasoning", "reasoning_judge_acc")):
        sel = [r for r in ok if r["qtype"] == qtype and judgments and judgments.get(item_key(r), {}).get("score") is not None]
        out.update(_with_ci(name, [judgments[item_key(r)]["score"] for r in sel], [r["doc_id"] for r in sel], n_boot, seed))
    sel = [r for r in ok if r["qtype"] == "reasoning" and ratings and item_key(r) in ratings]
    out.update(_with_ci("reasoning_human", [ratings[item_key(r)] for r in sel], [r["doc_id"] for r in sel], n_boot, seed))

    def col(key):
        return [r[key] for r in ok if r.get(key) is not None]

    ttft = col("ttft_ms")
    out.update({
        "ttft_ms_median": median(ttft) if ttft else None,
        "ttft_ms_p90": quantile(ttft, 0.9) if ttft else None,
        "decode_tokens_per_s_median": median(col("decode_tokens_per_s")) if col("decode_tokens_per_s") else None,
        "peak_mem_bytes_median": median(col("peak_mem_bytes")) if col("peak_mem_bytes") else None,
        "peak_mem_bytes_max": max(col("peak_mem_bytes")) if col("peak_mem_bytes") else None,
        "mem_kind": ok[0].get("mem_kind") if ok else None,
        "kv_bytes_median": median(col("kv_bytes")) if col("kv_bytes") else None,
        "gist_kv_bytes_median": median(col("gist_kv_bytes")) if col("gist_kv_bytes") else None,
        "prompt_tokens_median": median(col("prompt_tokens")) if col("prompt_tokens") else None,
        "context_tokens_median": median(col("context_tokens")) if col("context_tokens") else None,
        "compression_ratio_median": median(col("compression_ratio")) if col("compression_ratio") else None,
        "compress_ms_median": median(col("compress_ms")) if col("compress_ms") else None,
        "retrieval_ms_median": median(col("retrieval_ms")) if col("retrieval_ms") else None,
    })
    return out


def passkey_breakdown(rows: list[dict]) -> list[dict]:
    """Passkey accuracy per method x insertion depth bin x document length bin (tertiles)."""
    pk = [r for r in rows if r["qtype"] == "passkey" and r["status"] == "ok"]
    if not pk:
        return []
    lengths = sorted(r["context_tokens"] for r in pk)
    t1, t2 = quantile(lengths, 1 / 3), quantile(lengths, 2 / 3)

    def length_bin(n):
        return f"short (<={t1:.0f})" if n <= t1 else (f"medium (<={t2:.0f})" if n <= t2 else f"long (>{t2:.0f})")

    cells: dict[tuple, list[float]] = {}
    for r in pk:
        depth = next(name for lo, hi, name in DEPTH_BINS if lo <= r["passkey_depth"] < hi)
        for key in ((r["method"], depth, "all"), (r["method"], "all", length_bin(r["context_tokens"])), (r["method"], depth, length_bin(r["context_tokens"]))):
            cells.setdefault(key, []).append(r["scores"]["passkey_correct"])
    return [{"method": m, "depth": d, "length": length, "n": len(v), "acc": mean(v)} for (m, d, length), v in sorted(cells.items())]


def write_csv(path: str | Path, rows: list[dict]) -> None:
    from gistpoc.utils import atomic_path

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()})


def rating_sheet(rows: list[dict], seed: int) -> list[dict]:
    """Blinded sheet for the design's 3-point human rating of reasoning answers (method hidden, shuffled)."""
    items = [r for r in rows if r["qtype"] == "reasoning" and r["status"] == "ok"]
    random.Random(seed).shuffle(items)
    return [{"item_key": item_key(r), "question": r["question"], "reference": r["reference"], "answer": r["prediction"],
             "rating_1_to_3": ""} for r in items]


def read_ratings(path: str | Path) -> dict[str, float]:
    """Filled ratings (item_key, rating_1_to_3); blank rows are skipped, bad values name the line."""
    path = Path(path)
    if not path.exists():
        return {}
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), 2):
            value = (row.get("rating_1_to_3") or "").strip()
            if not value:
                continue
            try:
                rating = float(value)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: rating_1_to_3 must be 1, 2 or 3, got {value!r}") from err
            if rating not in (1.0, 2.0, 3.0):
                raise ValueError(f"{path}:{lineno}: rating_1_to_3 must be 1, 2 or 3, got {value!r}")
            out[row["item_key"]] = rating
    return out
