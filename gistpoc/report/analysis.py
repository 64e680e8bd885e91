"""Findings the design asks for, computed from the summary: question types, gist count vs score."""

from __future__ import annotations

from gistpoc import methods
from gistpoc.methods import parse

QTYPE_METRICS = [
    ("factual_f1", "factual (token F1)"),
    ("global_proxy_acc", "global theme (proxy acc.)"),
    ("reasoning_rouge_l", "reasoning (ROUGE-L)"),
    ("passkey_acc", "passkey (exact)"),
]


def curve_metrics(summary: list[dict]) -> list[tuple[str, str]]:
    """The panels of the quality-versus-ratio figure: factual F1, the global theme by the LLM judge where the run has
    one (else the proxy), passkey."""
    judged = any(r.get("global_judge_acc") is not None for r in summary)
    return [QTYPE_METRICS[0], ("global_judge_acc", "global theme (LLM judge)") if judged else QTYPE_METRICS[1], QTYPE_METRICS[3]]


def _ci(row: dict, key: str) -> tuple[float | None, float | None, float | None]:
    """(score, CI low, CI high) of a summary row; the bounds fall back to the score where the run has no CI."""
    v = row.get(key)
    if v is None:
        return None, None, None
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    return v, (v if lo is None else lo), (v if hi is None else hi)


def qtype_verdict(gist: dict, full: dict, closed: dict, key: str) -> dict:
    """Judge gist on one question type by what it adds over closed book, against what reading the document adds.

    ``recovered`` = (gist - closed) / (full - closed): 0 means the gist adds nothing over answering without the
    document, 1 means it adds as much as reading it. The verdict uses the bootstrap CIs: gist is "above closed book"
    only when its CI lies wholly above closed book's, "below" only when wholly below; "handled well" needs both the
    CI separation and >= 80 % recovered. When full context is not itself clearly above closed book, the type cannot
    tell methods apart and says so."""
    g, g_lo, g_hi = _ci(gist, key)
    f, f_lo, _ = _ci(full, key)
    c, c_lo, c_hi = _ci(closed, key)
    out = {"best_score": g, "best_lo": g_lo, "best_hi": g_hi, "full_context": f, "closed_book": c, "recovered": None}
    if g is None or f is None or c is None:
        out["verdict"] = "not measurable: full context or closed book missing from this run"
        return out
    if f_lo <= c_hi:
        out["verdict"] = "not measurable: full context is not clearly above closed book (CIs overlap)"
        return out
    out["recovered"] = (g - c) / (f - c)
    pct = f"recovers {out['recovered']:.0%} of what reading the document adds"
    if g_lo > c_hi:
        out["verdict"] = (f"handled well: {pct}, above closed book beyond the CIs" if out["recovered"] >= 0.8
                          else f"partly: above closed book beyond the CIs, but {pct} (< 80 %)")
    elif g_hi < c_lo:
        out["verdict"] = "handled badly: below closed book (CIs disjoint)"
    else:
        out["verdict"] = "handled badly: at closed-book level (CIs overlap)"
    return out


def question_type_findings(summary: list[dict]) -> list[dict]:
    """Per question type: the best gist-N, judged by its gain over closed book relative to full context's gain,
    with CIs (``qtype_verdict``)."""
    full = next((r for r in summary if r["method"] == "full_context"), {})
    closed = next((r for r in summary if r["method"] == "closed_book"), {})
    gists = [r for r in summary if parse(r["method"]).kind == "gist"]
    out = []
    for key, label in QTYPE_METRICS:
        scored = [r for r in gists if r.get(key) is not None]
        if not scored:
            continue
        best = max(scored, key=lambda r: r[key])
        out.append({"qtype": label, "best": best["method"], **qtype_verdict(best, full, closed, key)})
    return out


def gist_count_trend(summary: list[dict]) -> list[dict]:
    """Does the score rise with N? Sign of the change between consecutive N, per metric."""
    gists = sorted((r for r in summary if parse(r["method"]).kind == "gist" and not parse(r["method"]).chunk), key=lambda r: parse(r["method"]).n)
    out = []
    for key, label in QTYPE_METRICS:
        pts = [(parse(r["method"]).n, r[key]) for r in gists if r.get(key) is not None]
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


BUDGET_FAMILIES = ("gist", "rag_gist", *methods.BUDGET_FAMILIES)   # the order of the budget table
TRAINING_FREE = methods.BUDGET_FAMILIES


def budget_comparison(summary: list[dict]) -> dict:
    """Methods that answer from N cached positions, grouped by N (gist-N, the training-free baselines at the same N,
    the RAG + gist hybrid), and per N what the training buys: gist-N minus the best training-free method."""
    by_n: dict[int, list[dict]] = {}
    for r in summary:
        m = parse(r["method"])
        if m.kind in ("gist", "hybrid", "budget"):
            by_n.setdefault(m.n, []).append({**r, "family": m.family})
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
