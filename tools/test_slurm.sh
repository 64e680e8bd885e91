#!/usr/bin/env bash
# Start a real single-node SLURM on localhost (root; Debian packages slurmctld/slurmd/munge, one fake GPU)
# and run the tiny test config end to end through profiles/slurm. CI runs this after test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
FAKE_GPUS=1 bash tools/slurm-localhost/start-slurm-localhost.sh 16000
trap 'bash tools/slurm-localhost/stop-slurm-localhost.sh' EXIT
GISTPOC_SLURM=1 python -m pytest -q -p no:cacheprovider tests/e2e/test_slurm.py "$@"
