#!/usr/bin/env bash
# Issue 14's re-check of the Qwen paper-scale run with the engine as of 982aa30 (fused Triton kernels): the comparisons
# in docs/results/qwen2.5-coder-0.5b-paper-scale/engine_recheck/, from the committed predictions (device.sh recheck made
# the recheck-* answers on the H200, twice for the kernels; the eager ones and the run's own come from the run).
#   bash bench/paper_scale/engine_recheck.sh [DEST]     (default: that folder)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN=$ROOT/docs/results/qwen2.5-coder-0.5b-paper-scale
P=$RUN/predictions
DEST=${1:-$RUN/engine_recheck}
mkdir -p "$DEST"
check() { python -m gistpoc.evaluate.engine_check --a "$2" --b "$3" --out "$DEST/$1.json" | sed "s/^/$1 /"; }
check eager_vs_kernels "eager=$P/engine_check-{method}.eager.jsonl.gz" "kernels=$P/recheck-{method}.compiled.jsonl.gz"
check eager_vs_nokernels "eager=$P/engine_check-{method}.eager.jsonl.gz" "nokernels=$P/recheck-{method}.compiled_nokernels.jsonl.gz"
check nokernels_vs_kernels "nokernels=$P/recheck-{method}.compiled_nokernels.jsonl.gz" "kernels=$P/recheck-{method}.compiled.jsonl.gz"
check run_vs_nokernels "run=$P/{method}.jsonl.gz" "nokernels=$P/recheck-{method}.compiled_nokernels.jsonl.gz"
check kernels_repeat "first=$P/recheck-{method}.compiled.repeat.jsonl.gz" "second=$P/recheck-{method}.compiled.jsonl.gz"
