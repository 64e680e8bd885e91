#!/usr/bin/env python
"""Publish a finished run: write docs/results/<run>/ (config, report, summary, passkey breakdown, predictions, training
logs, engine check, figures, logs, provenance.json) from the run's outputs (gistpoc.report.publish)."""

import logging
from pathlib import Path

from gistpoc.cli import parser, run
from gistpoc.report.publish import publish
from gistpoc.utils import sha256_text

log = logging.getLogger("gistpoc")


def named(paths: list[str], name_of) -> dict[str, Path]:
    return {name_of(Path(p)): Path(p) for p in paths}


def main(args):
    preds = named(args.predictions, lambda p: p.parent.name)                           # results/eval/<method>/predictions.jsonl
    preds |= named(args.controls, lambda p: f"control-{p.parent.name}")                # results/controls/<name>/predictions.jsonl
    preds |= named(args.ablation_predictions, lambda p: f"ablation-{p.parent.name}")   # results/ablations/<name>/predictions.jsonl
    preds |= named(args.engine_check_answers, lambda p: f"engine_check-{p.name.removesuffix('.jsonl')}")   # <method>.eager.jsonl
    training = named(args.checkpoints, lambda p: p.name)                               # results/checkpoints/gist<N>
    training |= named(args.pretrained, lambda p: f"stage1-{p.name}")                   # results/pretrained/gist<N>
    training |= named(args.ablation_checkpoints, lambda p: f"ablation-{p.parent.name}")  # results/ablations/<name>/checkpoint
    prov = publish(args.dest, config=Path(args.config), report=Path(args.report), summary=Path(args.summary), passkey=Path(args.passkey),
                   stats=Path(args.stats), rating_sheet=Path(args.rating_sheet), predictions=preds, training=training,
                   figures=[Path(f) for f in args.figures], engine_check=Path(args.engine_check) if args.engine_check else None,
                   logs=[Path(p) for p in args.logs], config_hash=sha256_text(Path(args.config).read_text())[:16],
                   extra={name: Path(src) for name, src in (("questions.jsonl.gz", args.questions), ("qa_issues.json", args.qa_issues),
                                                            ("judgments.jsonl.gz", args.judgments), ("judge_calibration.json", args.judge_calibration)) if src})
    # the rule's output: a copy of the provenance, under results/ (the published folder itself is committed)
    Path(args.receipt).parent.mkdir(parents=True, exist_ok=True)
    Path(args.receipt).write_bytes((Path(args.dest) / "provenance.json").read_bytes())
    log.info("published %d files to %s (commit %s)", len(prov["files"]), args.dest, prov["commit"])


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--dest", required=True, help="the run's folder, e.g. docs/results/<run_name>")
    p.add_argument("--receipt", required=True, help="where the rule's output, a copy of the folder's provenance.json, goes")
    for name in ("config", "report", "summary", "passkey", "stats", "rating-sheet"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--predictions", nargs="+", required=True, help="results/eval/<method>/predictions.jsonl")
    for name in ("controls", "ablation-predictions", "engine-check-answers", "checkpoints", "pretrained", "ablation-checkpoints", "figures", "logs"):
        p.add_argument(f"--{name}", nargs="*", default=[])
    p.add_argument("--engine-check", default=None, help="results/engine_check/engine_check.json")
    p.add_argument("--questions", default=None, help="results/data/qa.jsonl: the run's questions")
    p.add_argument("--qa-issues", default=None, help="results/data/qa.issues.json: what the question writer kept and dropped")
    p.add_argument("--judgments", default=None, help="results/eval/judgments.jsonl (runs with an LLM judge)")
    p.add_argument("--judge-calibration", default=None, help="results/eval/judge_calibration.json")
    run(main, p)
