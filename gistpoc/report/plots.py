"""Report figures (matplotlib/seaborn), returned as base64 PNG so the HTML stands alone."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

from gistpoc.methods import parse

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def to_base64(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def png_file_base64(path) -> str:
    """The PNG as base64; "" when the file is absent (a figure whose step failed: the report says so)."""
    if not path or not Path(path).exists():
        return ""
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode()


def _method_color(m: str) -> str:
    return {"full_context": "tab:blue", "rag": "tab:orange", "closed_book": "tab:gray"}.get(m, "tab:green")


def _err(r: dict, key: str) -> tuple[float, float]:
    """Distances from a summary row's value to its CI bounds (0 where a bound is missing or on the wrong side)."""
    lo, hi = r.get(f"{key}_lo"), r.get(f"{key}_hi")
    return max(0.0, r[key] - (lo if lo is not None else r[key])), max(0.0, (hi if hi is not None else r[key]) - r[key])


def gist_count_vs_score(summary: list[dict], metrics: list[tuple[str, str]]) -> str:
    """One panel per question type: gist-N score vs N, with full/RAG/closed-book reference lines."""
    gist = sorted((r for r in summary if parse(r["method"]).kind == "gist" and not parse(r["method"]).chunk), key=lambda r: parse(r["method"]).n)
    refs = {r["method"]: r for r in summary if parse(r["method"]).kind != "gist"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        xs = [parse(r["method"]).n for r in gist if r.get(key) is not None]
        ys = [r[key] for r in gist if r.get(key) is not None]
        # clamp: a CI row edited by hand (or a degenerate bootstrap) must not break the figure
        errs = [_err(r, key) for r in gist if r.get(key) is not None]
        lo, hi = [e[0] for e in errs], [e[1] for e in errs]
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", color="tab:green", capsize=3, label="gist-N (95% CI)")
        for name, style in (("full_context", "-"), ("rag", "--"), ("closed_book", ":")):
            if name in refs and refs[name].get(key) is not None:
                ax.axhline(refs[name][key], ls=style, color=_method_color(name), label=name)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(xs or [1])
        ax.set_xticklabels([str(x) for x in xs] or [""])
        ax.set_xlabel("gist tokens N")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7, loc="best")
    return to_base64(fig)


def systems_bars(summary: list[dict]) -> str:
    methods = [r["method"] for r in summary]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, key, label, scale in (
        (axes[0], "ttft_ms_median", "TTFT median (ms)", 1),
        (axes[1], "peak_mem_bytes_median", "peak memory median (MiB)", 2**20),
        (axes[2], "kv_bytes_median", "KV cache held (KiB, log)", 2**10),
    ):
        vals = [(r.get(key) or 0) / scale for r in summary]
        ax.bar(methods, vals, color=[_method_color(m) for m in methods])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        if key == "kv_bytes_median":
            ax.set_yscale("log")
        if key == "ttft_ms_median":
            p90 = [(r.get("ttft_ms_p90") or 0) for r in summary]
            ax.scatter(methods, p90, marker="_", s=200, color="black", label="p90", zorder=3)
            ax.legend(fontsize=7)
    return to_base64(fig)


FAMILY_STYLE = {  # method family -> (colour, marker) in the quality-vs-KV figure
    "gist": ("tab:green", "o"), "rag_gist": ("tab:olive", "P"), "truncate_head": ("tab:purple", "<"), "truncate_tail": ("tab:pink", ">"),
    "kv_select": ("tab:red", "^"), "mean_pool": ("tab:brown", "s"), "ppl_select": ("tab:cyan", "D"),
    "full_context": ("tab:blue", "*"), "rag": ("tab:orange", "X"), "closed_book": ("tab:gray", "."),
}


def method_family(method: str) -> tuple[str, int | None]:
    """``kv_select25`` -> (``kv_select``, 25); ``gist10`` -> (``gist``, 10); ``rag`` -> (``rag``, None)."""
    m = parse(method)
    return m.family, (m.n if m.kind != "baseline" else None)


def quality_vs_kv(summary: list[dict], metrics: list[tuple[str, str]]) -> str:
    """One point per method (and N): quality against the KV bytes held when the answer ends (log x). Methods that
    answer from N cached positions share a family colour; their N is written beside each point."""
    rows = [r for r in summary if r.get("kv_bytes_median")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics):
        seen = set()
        for r in rows:
            if r.get(key) is None:
                continue
            fam, n = method_family(r["method"])
            colour, marker = FAMILY_STYLE.get(fam, ("black", "x"))
            x = r["kv_bytes_median"] / 2**20
            ax.scatter([x], [r[key]], color=colour, marker=marker, s=40, label=None if fam in seen else fam, zorder=3)
            seen.add(fam)
            if n is not None:
                ax.annotate(str(n), (x, r[key]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("KV held at the answer's end (MiB, log)")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, -0.08))
    return to_base64(fig)


def quality_vs_ratio(summary: list[dict], metrics: list[tuple[str, str]]) -> str:
    """The curve: quality (95 % CI) against the compression ratio (context tokens per cached position, the run's
    median; log x). The chunk-wise gists joined by a line, gist-N after the whole document and the training-free
    methods at their N as points, full context at 1x; RAG and closed book as horizontal lines (they hold no
    compressed cache)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    refs = {r["method"]: r for r in summary}
    for ax, (key, label) in zip(axes[0], metrics):
        chunked = sorted((r for r in summary if parse(r["method"]).chunk and r.get(key) is not None and r.get("compression_ratio_median")),
                         key=lambda r: r["compression_ratio_median"])
        if chunked:
            errs = [_err(r, key) for r in chunked]
            ax.errorbar([r["compression_ratio_median"] for r in chunked], [r[key] for r in chunked], yerr=list(zip(*errs)), marker="o",
                        color="tab:green", capsize=3, label=f"gist {parse(chunked[0]['method']).n} per chunk")
            for r in chunked:
                ax.annotate(r["method"], (r["compression_ratio_median"], r[key]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        seen = set()
        for r in summary:
            m = parse(r["method"])
            if m.chunk or m.kind not in ("gist", "budget") or r.get(key) is None or not r.get("compression_ratio_median"):
                continue
            colour, marker = ("tab:olive", "s") if m.kind == "gist" else FAMILY_STYLE.get(m.family, ("black", "x"))
            name = "gist-N, whole document" if m.kind == "gist" else m.family
            lo, hi = _err(r, key)
            ax.errorbar([r["compression_ratio_median"]], [r[key]], yerr=[[lo], [hi]], color=colour, marker=marker, capsize=2, ms=5,
                        ls="none", label=None if name in seen else name)
            seen.add(name)
            if m.kind == "gist":
                ax.annotate(r["method"], (r["compression_ratio_median"], r[key]), fontsize=6, xytext=(3, -9), textcoords="offset points")
        full = refs.get("full_context")
        if full and full.get(key) is not None:
            lo, hi = _err(full, key)
            ax.errorbar([1], [full[key]], yerr=[[lo], [hi]], color=_method_color("full_context"), marker="*", ms=9, capsize=3, ls="none",
                        label="full context (1x)")
        for name, style in (("rag", "--"), ("closed_book", ":")):
            if name in refs and refs[name].get(key) is not None:
                ax.axhline(refs[name][key], ls=style, color=_method_color(name), label=name)
        ax.set_xscale("log")
        ax.set_xlabel("context tokens per cached position (median, log)")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:   # beside the panels (the passkey panel's middle is empty in every run so far)
        axes[0][-1].legend(handles, labels, fontsize=6, loc="center right")
    fig.tight_layout()
    return to_base64(fig)


def passkey_heatmaps(breakdown: list[dict], methods: list[str]) -> str:
    import pandas as pd

    df = pd.DataFrame(breakdown)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(methods) + 1.8))
    for ax, col, other in ((axes[0], "depth", "length"), (axes[1], "length", "depth")):
        sub = df[(df[other] == "all") & (df[col] != "all")] if not df.empty else df
        if sub.empty:
            ax.set_axis_off()
            continue
        table = sub.pivot_table(index="method", columns=col, values="acc").reindex([m for m in methods if m in set(sub["method"])])
        if col == "depth":
            table = table[[c for c in ("early", "middle", "late") if c in table.columns]]
        else:  # short -> medium -> long
            table = table[sorted(table.columns, key=lambda c: ("short", "medium", "long").index(c.split()[0]))]
        sns.heatmap(table, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax, cbar=col == "length")
        ax.set_title(f"passkey accuracy by insertion {col}", fontsize=9)
    return to_base64(fig)


def training_curves(logs: dict, labels: dict | None = None) -> str:
    """Loss, held-out passkey accuracy (at the current stage and at the longest length) and gist-embedding
    norms per checkpoint; ``logs`` maps a key to {"train": rows, "eval": rows}, ``labels`` names the keys."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for key, lg in logs.items():
        name = (labels or {}).get(key, f"gist-{key}")
        tr, ev = lg["train"], lg["eval"]
        if tr:
            line = axes[0].plot([r["step"] for r in tr], [r["loss"] for r in tr], label=f"{name} train", lw=1)[0]
            axes[2].plot([r["step"] for r in tr], [r["gist_norm_max"] for r in tr], label=f"{name} max norm", lw=1)
        else:
            line = None
        color = line.get_color() if line is not None else None
        vl = [r for r in ev if r["kind"] == "val_loss"]
        if vl:
            axes[0].plot([r["step"] for r in vl], [r["value"] for r in vl], "o--", ms=3, color=color, label=f"{name} val")
        pk = [r for r in ev if r["kind"] == "passkey_acc"]
        if pk:
            axes[1].plot([r["step"] for r in pk], [r["value"] for r in pk], "o-", ms=3, color=color, label=f"{name} (stage length)")
        longest = [r for r in ev if r["kind"] == "passkey_acc_longest"]
        if longest:
            axes[1].plot([r["step"] for r in longest], [r["value"] for r in longest], "s:", ms=3, color=color, label=f"{name} (longest)")
        for r in ev:
            if r["kind"] == "promotion":
                axes[1].axvline(r["step"], color=color, lw=0.5, alpha=0.5)
    axes[0].set_title("answer-token loss (train / validation documents)", fontsize=9)
    axes[1].set_title("held-out passkey accuracy (lines: promotions)", fontsize=9)
    axes[1].set_ylim(-0.05, 1.05)
    axes[2].set_title("gist embedding norm (max over gist rows)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=6)
    return to_base64(fig)


def token_histogram(tokens: list[int]) -> str:
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.hist(tokens, bins=20, color="tab:purple")
    ax.set_xlabel("document length (model tokens)")
    ax.set_ylabel("documents")
    return to_base64(fig)
