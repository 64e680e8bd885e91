#!/usr/bin/env bash
# Set up (once) and run the whole experiment: raw dumps -> ... -> results/report.html
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
snakemake --cores "${CORES:-$(nproc)}" results/report.html "$@"
