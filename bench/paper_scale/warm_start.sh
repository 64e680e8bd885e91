#!/usr/bin/env bash
# Stage 1 of one gist-N warm-started from another N's stage-1 adapter (gist.warm_start), on the GPU machine after
# `device.sh install` and `device.sh model`: pretrain_gist.py as the rule runs it, with the paper-scale config's
# pretrain section and the overrides given as JSON; the adapter folder is packed into $OUT.
#   GISTPOC_GIT_COMMIT=<commit> bash bench/paper_scale/warm_start.sh N FROM_DIR MINUTES '{"curriculum": {...}}'
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
n=$1 from=$2 minutes=$3 over=${4:-"{}"}
export PYTHONPATH=$PWD/.dsite:$PWD PATH=$PWD/.dsite/bin:$PATH OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
[ -f results/model/base/model_ref.json ] || python -m snakemake --cores 4 results/model/base/model_ref.json --configfile "$CONFIG" >/dev/null 2>&1
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
