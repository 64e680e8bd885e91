#!/usr/bin/env bash
# Issue 29's quality check of the 4-bit engine: the curve run's questions (config.qwen-curve.yaml, data rebuilt from the
# raw dumps, questions from the writer's request cache) answered closed book and with the full context by the base
# model in bf16, in bitsandbytes NF4 (bench/paper_scale/nf4.yaml merged over the config) and with its linears in int4
# through FBGEMM (bench/paper_scale/int4_fbgemm.yaml), on the same machine, one after the other; then
# gistpoc.evaluate.engine_check of int4 against bf16 and against NF4.
#
# Here (repo root):  NO_WRITER=1 WRITER_CACHE=bench/results/qwen_llm_qa_gpu_run/writer_cache.tar.gz \
#                        NF4=1 CONFIG=config.qwen-curve.yaml PART_MB=54 bash bench/paper_scale/pack.sh   (NF4=1: bnb/)
#                    bash bench/paper_scale/slim.sh recut m 55; bash bench/paper_scale/slim.sh out
# GPU machine, carrying w1 + p1, then fb, then bnb, then e1, e2, m1..m9 (each call: CONFIG=config.qwen-curve.yaml
#                    bash bench/paper_scale/device.sh unpack), then, detached or in one call of <= 10 minutes:
#                    bash bench/paper_scale/int4_engine_check.sh run      -> device_out/int4check/
#                    ADAPTER=<dir> bash bench/paper_scale/int4_engine_check.sh passkey   (after run: the data exist)
#                    OUT=$OUT bash bench/paper_scale/int4_engine_check.sh collect
# passkey: the gist half. A gist adapter (ADAPTER, a LoRA checkpoint over the run's base model; PK_METHOD names its
# layout, default gist16per128) answers the test set's passkey questions merged into bf16, over NF4 and merged then
# re-quantised to int4 (FBGEMM), each through the command the workflow's evaluate_gist rule runs
# (bench/paper_scale/eval_command.py over a dry run), then engine_check of int4 against both.
# Back here: the near-tie analysis, CPU, float32 (bench/paper_scale/divergence_gaps.py over the two answer sets).
set -euo pipefail
export CONFIG=${CONFIG:-config.qwen-curve.yaml}
D=device_out/int4check
T="results/eval/closed_book/predictions.jsonl results/eval/full_context/predictions.jsonl"
extra_for() { case $1 in bf16) echo ;; nf4) echo bench/paper_scale/nf4.yaml ;; *) echo bench/paper_scale/int4_fbgemm.yaml ;; esac; }   # the pass's override
case ${1:-} in
run)
    [ -d .dsite/fbgemm_gpu ] || python -m pip install -q --no-index --no-deps --no-compile --target .dsite device_in/fb/*.whl
    mkdir -p "$D/bf16" "$D/nf4" "$D/int4-fbgemm"
    for kind in ${KINDS:-bf16 nf4 int4-fbgemm}; do
        extra=$(extra_for "$kind")
        EXTRA_CONFIG=$extra bash bench/paper_scale/device.sh run $T >"$D/$kind.log" 2>&1 || { tail -n 30 "$D/$kind.log"; exit 1; }
        for m in closed_book full_context; do cp "results/eval/$m/predictions.jsonl" "$D/$kind/$m.jsonl"; done
    done
    for ref in bf16 nf4; do
        [ -f "$D/$ref/full_context.jsonl" ] || { echo "$ref: no answers"; continue; }
        PYTHONPATH=$PWD/.dsite:$PWD python -m gistpoc.evaluate.engine_check --a "$ref=$D/$ref/{method}.jsonl" \
            --b "int4-fbgemm=$D/int4-fbgemm/{method}.jsonl" --out "$D/${ref}_vs_int4.json" | tee "$D/${ref}_vs_int4.txt"
    done
    date -u >"$D/DONE"
    ;;
passkey)
    : "${ADAPTER:?a gist checkpoint dir}"
    method=${PK_METHOD:-gist16per128}
    export PYTHONPATH=$PWD/.dsite:$PWD${PYTHONPATH:+:$PYTHONPATH}   # Snakemake and the wheels device.sh installed
    [ -d .dsite/fbgemm_gpu ] || python -m pip install -q --no-index --no-deps --no-compile --target .dsite device_in/fb/*.whl
    for kind in ${KINDS:-bf16 nf4 int4-fbgemm}; do
        extra=$(extra_for "$kind")
        mkdir -p "$D/$kind"
        python -m snakemake --configfile "$CONFIG" $extra -n -p --forceall results/eval/gist16per512/answers.jsonl >"$D/$kind/dryrun.txt" 2>&1 || true
        # the gist answers' test set (test.gist<N>.jsonl of the chunked N) is not an input of the baselines' answers
        ds=$(python bench/paper_scale/eval_command.py --method gist16per512 --get dataset <"$D/$kind/dryrun.txt") || exit 1
        python -m snakemake --configfile "$CONFIG" $extra --cores 4 --nolock "$ds" >"$D/$kind/dataset.log" 2>&1 || { tail -n 20 "$D/$kind/dataset.log"; exit 1; }
        cmd=$(python bench/paper_scale/eval_command.py --method gist16per512 --set method="$method" --set label="$method" \
            --set qtypes=passkey --set checkpoint="$ADAPTER" --set cache-dir="$D/$kind/caches" --set out="$D/$kind/$method.jsonl" \
            --set environment-out="$D/$kind/$method.environment.json" --set log="$D/$kind/$method.log" <"$D/$kind/dryrun.txt") \
            || { tail -n 20 "$D/$kind/dryrun.txt"; exit 1; }
        echo "$cmd" >"$D/$kind/$method.cmd"
        bash -c "$cmd" >"$D/$kind/$method.out" 2>&1 || { echo "$kind: failed"; tail -n 20 "$D/$kind/$method.out"; }
    done
    for ref in bf16 nf4; do
        [ -f "$D/$ref/$method.jsonl" ] || continue
        python -m gistpoc.evaluate.engine_check --a "$ref=$D/$ref/{method}.jsonl" \
            --b "int4-fbgemm=$D/int4-fbgemm/{method}.jsonl" --methods "$method" --out "$D/${ref}_vs_int4_passkey.json" | tee "$D/${ref}_vs_int4_passkey.txt"
    done
    date -u >"$D/PASSKEY_DONE"
    ;;
collect)
    : "${OUT:?on the GPU machine}"
    mkdir -p "$OUT/int4check" && tar cf - -C "$D" --exclude=caches . | tar xf - -C "$OUT/int4check"   # not the gist KV caches (GBs)
    cp results/report/config.yaml "$OUT/int4check/config.yaml" 2>/dev/null || true
    gzip -f "$OUT"/int4check/*/*.jsonl
    ls -R "$OUT/int4check" | head -20
    ;;
*) sed -n 2,21p "$0"; exit 2 ;;
esac
