#!/usr/bin/env bash
# Time the whole default DAG (raw dumps -> results/report.html) from a fresh clone, with the same
# command the README gives, plus a no-op dry run. Setup (pip) is not counted; the model conversion is.
# Usage: bash bench/time_default_dag.sh [CORES]   (default: every core, as run.sh; prints, and writes
#        bench/results/time_default_dag.txt, the run's report and summary beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CORES=${1:-$(nproc)}
WORK=$(mktemp -d)
git clone -q "$REPO" "$WORK/repo"
ln -s "$REPO/.venv" "$WORK/repo/.venv"
cd "$WORK/repo"
export PATH="$REPO/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s.%N)
snakemake --cores "$CORES" results/report.html > "$WORK/run.log" 2>&1
end=$(date +%s.%N)
dry_start=$(date +%s.%N)
snakemake -n --cores "$CORES" results/report.html > "$WORK/dry.log" 2>&1
dry_end=$(date +%s.%N)
grep -q "Nothing to be done" "$WORK/dry.log"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD)  cores: $CORES  cpus: $(nproc)"
  echo "full DAG from a fresh clone (snakemake --cores $CORES results/report.html): $(echo "$end - $start" | bc) s"
  echo "no-op dry run (snakemake -n): $(echo "$dry_end - $dry_start" | bc) s"
  echo "per-rule seconds (benchmark: files):"
  for f in benchmarks/*/*.tsv; do printf "  %-40s %s\n" "$f" "$(tail -n 1 "$f" | cut -f1)"; done
} | tee "$REPO/bench/results/time_default_dag.txt"
cp "$WORK/repo/results/report.html" "$REPO/bench/results/last_default_report.html" 2>/dev/null || true
cp "$WORK/repo/results/eval/summary.csv" "$REPO/bench/results/last_default_summary.csv" 2>/dev/null || true
rm -rf "$REPO/bench/results/last_default_controls"   # cp -r into an existing folder would nest the new copy inside the old
cp -r "$WORK/repo/results/controls" "$REPO/bench/results/last_default_controls" 2>/dev/null || true
