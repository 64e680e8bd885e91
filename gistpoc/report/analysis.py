"""Findings the design asks for, computed from the summary: question types, gist count vs score."""

from __future__ import annotations

QTYPE_METRICS = [
    ("factual_f1", "factual (token F1)"),
    ("global_proxy_acc", "global theme (proxy acc.)"),
    ("reasoning_rouge_l", "reasoning (ROUGE-L)"),
    ("passkey_acc", "passkey (exact)"),
]


def question_type_findings(summary: list[dict]) -> list[dict]:
    """Per question type: best gist-N, its score relative to full context and to closed book."""
    full = next((r for r in summary if r["method"] == "full_context"), {})
    closed = next((r for r in summary if r["method"] == "closed_book"), {})
    gists = [r for r in summary if r["method"].startswith("gist")]
    out = []
    for key, label in QTYPE_METRICS:
        scored = [r for r in gists if r.get(key) is not None]
        if not scored:
            continue
        best = max(scored, key=lambda r: r[key])
        f, c = full.get(key), closed.get(key)
        rel = best[key] / f if f else None
        if rel is not None and rel >= 0.8:
            verdict = "handled well (>= 80% of full context)"
        elif c is not None and best[key] <= c:
            verdict = "handled badly: no better than the closed-book control"
        else:
            verdict = "handled badly (< 80% of full context)"
        out.append({"qtype": label, "best": best["method"], "best_score": best[key], "full_context": f, "closed_book": c, "relative_to_full": rel, "verdict": verdict})
    return out


def gist_count_trend(summary: list[dict]) -> list[dict]:
    """Does the score rise with N? Sign of the change between consecutive N, per metric."""
    gists = sorted((r for r in summary if r["method"].startswith("gist")), key=lambda r: int(r["method"][4:]))
    out = []
    for key, label in QTYPE_METRICS:
        pts = [(int(r["method"][4:]), r[key]) for r in gists if r.get(key) is not None]
        if len(pts) < 2:
            continue
        diffs = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
        if all(d >= 0 for d in diffs) and any(d > 0 for d in diffs):
            trend = "rises with N"
        elif all(d <= 0 for d in diffs) and any(d < 0 for d in diffs):
            trend = "falls with N"
        elif all(d == 0 for d in diffs):
            trend = "flat across N"
        else:
            trend = "not monotonic in N"
        out.append({"metric": label, "points": ", ".join(f"N={n}: {v:.2f}" for n, v in pts), "trend": trend})
    return out


BUDGET_FAMILIES = ("gist", "rag_gist", "truncate_head", "truncate_tail", "kv_select", "mean_pool", "ppl_select")
TRAINING_FREE = ("truncate_head", "truncate_tail", "kv_select", "mean_pool", "ppl_select")


def budget_comparison(summary: list[dict]) -> dict:
    """Methods that answer from N cached positions, grouped by N (gist-N, the training-free baselines at the same N,
    the RAG + gist hybrid), and per N what the training buys: gist-N minus the best training-free method."""
    by_n: dict[int, list[dict]] = {}
    for r in summary:
        stem = r["method"].rstrip("0123456789")
        if stem in BUDGET_FAMILIES and stem != r["method"]:
            by_n.setdefault(int(r["method"][len(stem):]), []).append({**r, "family": stem})
    rows, gains = [], []
    for n in sorted(by_n):
        group = sorted(by_n[n], key=lambda r: BUDGET_FAMILIES.index(r["family"]))
        rows.extend({**r, "n": n} for r in group)
        gist = next((r for r in group if r["family"] == "gist"), None)
        free = [r for r in group if r["family"] in TRAINING_FREE]
        if gist is None or not free:
            continue
        for key, label in QTYPE_METRICS:
            scored = [r for r in free if r.get(key) is not None]
            if gist.get(key) is None or not scored:
                continue
            best = max(scored, key=lambda r: r[key])
            gains.append({"n": n, "metric": key, "label": label, "gist": gist[key], "best_free": best["method"], "best_free_score": best[key],
                          "gain": gist[key] - best[key]})
    return {"rows": rows, "gains": gains}
