#!/usr/bin/env bash
# Stage 1 of one gist-N warm-started from another N's stage-1 adapter (gist.warm_start), on the GPU machine after
# `device.sh install` and `device.sh model`: pretrain_gist.py as the rule runs it, with the paper-scale config's
# pretrain section and the overrides given as JSON; the adapter folder is packed into $OUT.
#   GISTPOC_GIT_COMMIT=<commit> bash bench/paper_scale/warm_start.sh N FROM_DIR MINUTES '{"curriculum": {...}}'
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
n=$1 from=$2 minutes=$3 over=${4:-"{}"}
export PYTHONPATH=$PWD/.dsite:$PWD PATH=$PWD/.dsite/bin:$PATH OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
DEV=$PWD/device_in
# a bare machine: the few wheels the scripts need, the stage-1 training records and the GGUF in parts (g1..g3)
if [ -d "$DEV/g1" ] && [ ! -f results/model/base/model_ref.json ]; then
    python -m pip install -q --no-index --no-deps --target .dsite "$DEV"/g1/*.whl
    tar xJf "$DEV/g1/data.tar.xz"
    mkdir -p .dmodel && cat "$DEV"/g[0-9]/gpart_* >.dmodel/smollm2.gguf
    [ "$(sha256sum .dmodel/smollm2.gguf | cut -d' ' -f1)" = "$(cat "$DEV/g1/SHA256")" ] || { echo "GGUF checksum mismatch" >&2; exit 1; }
    export GISTPOC_SMOLLM2_GGUF=$PWD/.dmodel/smollm2.gguf
    python scripts/prepare_model.py --model "$(python -c "import json; from gistpoc.config import load_config; print(json.dumps(load_config('$CONFIG')['model']))")" \
        --out-dir results/model/base --log logs/prepare_model.log
fi
python - "$CONFIG" "$minutes" "$over" >warm_args.json <<'PY'
import json, sys
from gistpoc.config import load_config, merged_train
c = load_config(sys.argv[1])
t = merged_train(merged_train(c["train"], c["pretrain"]), json.loads(sys.argv[3]))
t["time_limit_minutes"] = float(sys.argv[2])
print(json.dumps({"model": c["model"], "train": t, "instruction": c["gist"]["instruction"], "seed": c["seed"]}))
PY
arg() { python -c "import json, sys; print(json.dumps(json.load(open('warm_args.json'))[sys.argv[1]]) if sys.argv[1] in ('model', 'train') else json.load(open('warm_args.json'))[sys.argv[1]])" "$1"; }
mkdir -p logs/pretrain_warm
python scripts/pretrain_gist.py --model "$(arg model)" --model-ref results/model/base/model_ref.json --train-cfg "$(arg train)" \
    --train "results/dataset/train.gist$n.jsonl" --n-gist "$n" --instruction "$(arg instruction)" --seed "$(arg seed)" \
    --passkey-digits 5 --warm-start "$from" --out-dir "results/pretrained-warm/gist$n" \
    --state-dir "results/state/pretrain-warm/gist$n" --log "logs/pretrain_warm/gist$n.log" || true
grep -E "held-out passkey accuracy" "logs/pretrain_warm/gist$n.log" | tail -n 12
[ -n "${OUT:-}" ] && tar cf "$OUT/warm_gist$n.tar" "results/pretrained-warm/gist$n" "logs/pretrain_warm/gist$n.log" 2>/dev/null || true
