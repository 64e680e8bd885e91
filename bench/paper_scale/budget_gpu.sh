#!/usr/bin/env bash
# Issue 15 (and 14's quality check) on the offline GPU machine, for the committed paper-scale SmolLM2 run:
# the matched-budget baselines at N = 10/25/50 on its test set (base model only: they need no training), and closed
# book + full context answered by the eager and by the compiled engine on the passkey and factual questions.
# Parts (device_in/, from this machine): q1 = the test set (gz) + the gguf wheel; m1..m3 = the SmolLM2 GGUF in thirds.
#   bash bench/paper_scale/budget_gpu.sh      (once m3 is there; writes to $OUT)
set -euo pipefail
CONFIG=docs/results/smollm2-paper-scale/config.yaml
SITE=$PWD/.dsite
DEV=$PWD/device_in
export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export GISTPOC_SMOLLM2_GGUF=$PWD/.dmodel/$(cat "$DEV/m1/NAME")
python -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$DEV"/q1/*.whl
mkdir -p .dmodel results/dataset "$OUT"
cat "$DEV"/m[0-9]/m_part_* >"$GISTPOC_SMOLLM2_GGUF.tmp"
[ "$(sha256sum "$GISTPOC_SMOLLM2_GGUF.tmp" | cut -d' ' -f1)" = "$(cat "$DEV/m1/SHA256")" ] || { echo "GGUF checksum mismatch" >&2; exit 1; }
mv "$GISTPOC_SMOLLM2_GGUF.tmp" "$GISTPOC_SMOLLM2_GGUF"
gunzip -c "$DEV/q1/test.gist10.jsonl.gz" >results/dataset/test.gist10.jsonl
model=$(python -c "import json; from gistpoc.config import load_config; print(json.dumps(load_config('$CONFIG')['model']))")
cfg() { python -c "import sys; from gistpoc.config import load_config; c = load_config('$CONFIG'); print(eval(sys.argv[1]))" "$1"; }
python scripts/prepare_model.py --model "$model" --out-dir results/model/base --log "$OUT/prepare_model.log"
methods=$(cfg "' '.join(f'{m}{n}' for n in c['eval']['budget']['n'] for m in c['eval']['budget']['methods'])")
dirs=$(for m in $methods; do printf 'results/eval/%s ' "$m"; done)
common=(--model "$model" --model-ref results/model/base --dataset results/dataset/test.gist10.jsonl
        --baseline-instruction "$(cfg "c['eval']['baseline_instruction']")" --max-new-tokens "$(cfg "c['eval']['max_new_tokens']")"
        --warmup-items "$(cfg "c['eval']['warmup_items']")" --seed "$(cfg "c['seed']")")
start=$(date +%s)
python scripts/evaluate_budget.py --methods $methods --out-dirs $dirs "${common[@]}" --engine compiled \
    --engine-batch "$(cfg "c['eval']['engine_batch']")" --window "$(cfg "c['eval']['budget']['window']")" \
    --pool "$(cfg "c['eval']['budget']['pool']")" --log "$OUT/evaluate_budget.log"
echo "budget baselines: $(($(date +%s) - start)) s"
for m in $methods; do mkdir -p "$OUT/$m" && cp "results/eval/$m/answers.jsonl" "results/eval/$m/environment.json" "$OUT/$m/"; done
for engine in compiled eager; do
    for m in closed_book full_context; do
        start=$(date +%s)
        python scripts/evaluate_method.py --method "$m" "${common[@]}" --gist-instruction x --embedding-model none \
            --qtypes passkey factual --engine "$engine" --out "$OUT/engines/$m.$engine.jsonl" \
            --environment-out "$OUT/engines/$m.$engine.env.json" --log "$OUT/engines/$m.$engine.log"
        echo "$m $engine: $(($(date +%s) - start)) s"
    done
done
