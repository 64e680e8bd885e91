#!/usr/bin/env python
"""Build results/report.html from this run's result files (one self-contained HTML file)."""

from gistpoc.cli import parser, run
from gistpoc.config import load_config
from gistpoc.report.build import build_report
from gistpoc.utils import write_text_atomic


def main(args):
    config = load_config(args.config)
    html = build_report(config, args.config, args.summary, args.passkey, args.predictions, args.stats, args.checkpoints,
                        args.mask, args.attention, args.rulegraph, args.qa_issues, args.environments,
                        args.ablation_checkpoints, args.ablation_predictions, args.pretrained, args.controls,
                        judge_calibration_json=args.judge_calibration, judgments_jsonl=args.judgments)
    write_text_atomic(args.out, html)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--config", required=True, help="the config file(s) of the run, merged as Snakemake saw them")
    p.add_argument("--summary", required=True)
    p.add_argument("--passkey", required=True)
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--environments", nargs="*", default=[],
                   help="environment.json of each evaluation (where it ran); missing ones are reported as not recorded")
    p.add_argument("--stats", required=True)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--attention", required=True)
    p.add_argument("--rulegraph", default=None)
    p.add_argument("--qa-issues", default=None)
    p.add_argument("--ablation-checkpoints", nargs="*", default=[], help="results/ablations/<name>/checkpoint of each ablation")
    p.add_argument("--ablation-predictions", nargs="*", default=[], help="their passkey predictions, in the same order")
    p.add_argument("--pretrained", nargs="*", default=[], help="the stage-1 adapter folder of each gist-N (gist.pretrained)")
    p.add_argument("--controls", nargs="*", default=[], help="the context-scrambling control's predictions (results/controls/gist<N>_scrambled)")
    p.add_argument("--judge-calibration", default=None, help="results/eval/judge_calibration.json (the LLM judge on the hand labels)")
    p.add_argument("--judgments", default=None, help="results/eval/judgments.jsonl (the LLM judge's scores; the controls' rows use them)")
    p.add_argument("--out", required=True)
    run(main, p)
