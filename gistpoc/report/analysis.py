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
