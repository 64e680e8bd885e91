#!/usr/bin/env bash
# Paper-scale run -- last step, on the CPU machine: summarise a finished (or partly finished) run tree and copy it
# into docs/results/smollm2-paper-scale/ (what the repository publishes).
#   WORK   the run tree (the prepare_here.sh worktree, with the GPU half's results unpacked into it)
#   The tree must hold results/eval/<method>/predictions.jsonl for every method; ablation predictions are optional
#   (an ablation without them is reported as not evaluated on the test set).
# Usage (repo root):  WORK=/tmp/gistpoc-paper-scale bash bench/paper_scale/assemble.sh
set -euo pipefail
ROOT=$(pwd)
WORK=${WORK:-/tmp/gistpoc-paper-scale}
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
DEST=$ROOT/${DEST:-docs/results/smollm2-paper-scale}
PY=${PY:-$ROOT/.venv/bin/python}
cd "$WORK"
cfg() { "$PY" -c "import sys, yaml; c = yaml.safe_load(open('$ROOT/$CONFIG')); print(eval(sys.argv[1]))" "$1"; }
methods="closed_book full_context rag $(cfg "' '.join(f'gist{n}' for n in c['gist']['n_tokens'])")"
# matched-budget baselines and the RAG + gist hybrid, as configured (rules/common.smk: BUDGET_METHODS, RAG_GIST)
methods="$methods $(cfg "' '.join(f'{m}{n}' for n in sorted(c['eval']['budget']['n']) for m in c['eval']['budget']['methods'])")"
methods="$methods $(cfg "' '.join(f'rag_gist{n}' for n in sorted(c['eval']['rag_gist']))")"
ablations=$(cfg "' '.join(a['name'] for a in c.get('ablations', []))")
preds=(); envs=(); ab_ck=(); ab_pred=()
for m in $methods; do preds+=("results/eval/$m/predictions.jsonl"); envs+=("results/eval/$m/environment.json"); done
for a in $ablations; do
    ab_ck+=("results/ablations/$a/checkpoint")
    [ -f "results/ablations/$a/predictions.jsonl" ] && ab_pred+=("results/ablations/$a/predictions.jsonl")
done
"$PY" scripts/write_run_config.py --config "$("$PY" -c "import json; from gistpoc.config import load_config; print(json.dumps(load_config('$ROOT/$CONFIG')))")" \
    --out results/report/config.yaml
"$PY" scripts/summarize_eval.py --predictions "${preds[@]}" --global-threshold "$(cfg "c['eval']['global_proxy_threshold']")" \
    --bootstrap "$(cfg "c['eval']['bootstrap_samples']")" --seed "$(cfg "c['seed']")" --summary results/eval/summary.csv \
    --passkey results/eval/passkey_breakdown.csv --rating-sheet results/eval/reasoning_rating_sheet.csv
snakemake --rulegraph --nolock results/report.html --configfile results/report/config.yaml 2>/dev/null |
    "$PY" scripts/dot_to_svg.py --out results/figures/rulegraph.svg
ck=(); pre=(); for n in $(cfg "' '.join(str(n) for n in c['gist']['n_tokens'])"); do
    ck+=("results/checkpoints/gist$n")
    [ -f "results/pretrained/gist$n/provenance.json" ] && pre+=("results/pretrained/gist$n")
done
ctl=(); for n in $(cfg "' '.join(str(n) for n in c['eval'].get('scramble_control', []))"); do
    [ -f "results/controls/gist${n}_scrambled/predictions.jsonl" ] && ctl+=("results/controls/gist${n}_scrambled/predictions.jsonl")
done
att=(); [ -f results/figures/gist_attention.png ] && att=(--attention results/figures/gist_attention.png) || att=(--attention missing.png)
"$PY" scripts/build_report.py --config results/report/config.yaml --summary results/eval/summary.csv \
    --passkey results/eval/passkey_breakdown.csv --predictions "${preds[@]}" --environments "${envs[@]}" \
    --stats results/data/corpus_stats.json --checkpoints "${ck[@]}" --mask results/figures/attention_mask.png "${att[@]}" \
    --rulegraph results/figures/rulegraph.svg --qa-issues results/data/qa.issues.json \
    ${ab_ck[@]:+--ablation-checkpoints "${ab_ck[@]}"} ${ab_pred[@]:+--ablation-predictions "${ab_pred[@]}"} \
    ${pre[@]:+--pretrained "${pre[@]}"} ${ctl[@]:+--controls "${ctl[@]}"} --out results/report.html

rm -rf "$DEST/predictions" "$DEST/figures"
[ -d "$DEST/training" ] && find "$DEST/training" -maxdepth 1 -type f -delete   # earlier runs' logs in training/run*/ stay
mkdir -p "$DEST/predictions" "$DEST/training" "$DEST/figures"
cp results/report.html results/eval/summary.csv results/eval/passkey_breakdown.csv results/data/corpus_stats.json "$DEST/"
gzip -9nc results/eval/reasoning_rating_sheet.csv >"$DEST/reasoning_rating_sheet.csv.gz"
for m in $methods; do gzip -9nc "results/eval/$m/predictions.jsonl" >"$DEST/predictions/$m.jsonl.gz"; done
for a in $ablations; do
    [ -f "results/ablations/$a/predictions.jsonl" ] && gzip -9nc "results/ablations/$a/predictions.jsonl" >"$DEST/predictions/ablation-$a.jsonl.gz"
done
for d in "${ck[@]}" "${ab_ck[@]}" "${pre[@]}"; do
    name=$(basename "$d"); [ "$name" = checkpoint ] && name=ablation-$(basename "$(dirname "$d")")
    case $d in results/pretrained/*) name=stage1-$name ;; esac
    for f in train_log.csv eval_log.csv summary.json provenance.json; do [ -f "$d/$f" ] && cp "$d/$f" "$DEST/training/${name}_$f"; done
done
for f in "${ctl[@]}"; do gzip -9nc "$f" >"$DEST/predictions/control-$(basename "$(dirname "$f")").jsonl.gz"; done
[ -f results/figures/gist_attention.png ] && cp results/figures/gist_attention.png "$DEST/figures/"
# issue 14's quality check (device.sh: closed book and full context once more with the eager engine), when the run has it
if ls results/engine_check/*.eager.jsonl >/dev/null 2>&1; then
    for f in results/engine_check/*.eager.jsonl; do gzip -9nc "$f" >"$DEST/predictions/engine_check-$(basename "$f" .jsonl).jsonl.gz"; done
    "$PY" "$ROOT/bench/paper_scale/engine_check.py" --run . --out "$DEST/engine_check.json" \
        --methods $(for f in results/engine_check/*.eager.jsonl; do basename "$f" .eager.jsonl; done)
fi
tar czf "$DEST/logs.tar.gz" $(ls -d logs benchmarks results/pretrained-restart/*/*.csv results/pretrained-restart/*/*.json device_run.log device_rag.log device_base_*.log device_budget.log device_lane*.log 2>/dev/null)
du -sh "$DEST"
