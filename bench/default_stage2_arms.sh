#!/usr/bin/env bash
# Stage-2 arms on the embedded default (issue 27's default target: gist answers are text, and factual F1 at least
# closed book's). From a finished default tree (bench/time_default_dag.sh leaves one in a temporary folder), each arm
# is a copy of that tree run with one override file beside config.yaml: Snakemake reruns only what the override
# invalidates (stage 2 and the gist answers), the data, questions and baselines stay. Then one table for every arm,
# the tree itself included, from the arms' scored answers (bench/default_stage2_table.py).
#
# Usage: TREE=/tmp/tmp.X/repo OUT=bench/results/default_stage2_arms bash bench/default_stage2_arms.sh \
#          'steps16=train: {max_steps: 16, checkpoint_every_steps: 8, curriculum: {check_every_steps: 16}}' \
#          'share25=train: {passkey_share: 0.25}'
# NS="10 25 50" picks the checkpoints (default: all three); CORES (default: every core).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
: "${TREE:?a finished default tree (its results/eval holds every method)}"
OUT=${OUT:-bench/results/default_stage2_arms}
NS=${NS:-10 25 50}
CORES=${CORES:-$(nproc)}
mkdir -p "$OUT"
export PATH="$REPO/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
targets=()
for n in $NS; do targets+=("results/eval/gist$n/predictions.jsonl"); done
arms=("base=$TREE")
for spec in "$@"; do
  name=${spec%%=*}
  yaml=${spec#*=}
  dir=$(mktemp -d)/repo
  cp -a "$TREE" "$dir"
  printf '%s\n' "$yaml" > "$dir/arm.yaml"
  start=$(date +%s)
  (cd "$dir" && snakemake --cores "$CORES" "${targets[@]}" --configfile config.yaml arm.yaml > "$dir/arm.log" 2>&1) || {
    echo "arm $name failed: $dir/arm.log"; tail -20 "$dir/arm.log"; exit 1; }
  echo "arm $name: $(($(date +%s) - start)) s ($dir)"
  cp "$dir/arm.yaml" "$OUT/$name.yaml"
  mkdir -p "$OUT/$name"
  for n in $NS; do
    cp "$dir/results/checkpoints/gist$n/train_log.csv" "$OUT/$name/gist${n}_train_log.csv"
    cp "$dir/results/checkpoints/gist$n/eval_log.csv" "$OUT/$name/gist${n}_eval_log.csv" 2>/dev/null || true
  done
  arms+=("$name=$dir")
done
python bench/default_stage2_table.py --ns $NS --out "$OUT/table.json" "${arms[@]}" | tee "$OUT/table.md"
