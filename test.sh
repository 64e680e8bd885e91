#!/usr/bin/env bash
# Set up (once) and run every test: unit tests, the real-model proofs, the OpenAI-compatible server,
# the whole workflow on a tiny config, lint and format checks.
set -euo pipefail
cd "$(dirname "$0")"
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check gistpoc scripts tests bench
snakefmt --check Snakefile rules/
python -m pytest -q -p no:cacheprovider "$@"
