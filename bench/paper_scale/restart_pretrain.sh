#!/usr/bin/env bash
# Restart one stage-1 run that stayed on the plateau, with another seed (stream draws and initialisation), beside a
# running pipeline: pretrain_gist.py as the rule runs it, into results/pretrained-restart/gist<N>.
#   GISTPOC_GIT_COMMIT=<commit> bash bench/paper_scale/restart_pretrain.sh N SEED MINUTES
set -euo pipefail
CONFIG=${CONFIG:-docs/results/smollm2-paper-scale/config.yaml}
n=$1 seed=$2 minutes=$3
export PYTHONPATH=$PWD/.dsite:$PWD PATH=$PWD/.dsite/bin:$PATH OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
read -r model cfg instr <<<"$(python - "$CONFIG" "$minutes" <<'PY'
import json, shlex, sys
from gistpoc.config import load_config, merged_train
c = load_config(sys.argv[1])
t = merged_train(c["train"], c["pretrain"])
t["time_limit_minutes"] = float(sys.argv[2])
print(shlex.quote(json.dumps(c["model"], sort_keys=True)), shlex.quote(json.dumps(t, sort_keys=True)), shlex.quote(c["gist"]["instruction"]))
PY
)"
eval "set -- $model $cfg $instr"
mkdir -p logs/pretrain_restart
setsid nohup python scripts/pretrain_gist.py --model "$1" --model-ref results/model/base/model_ref.json --train-cfg "$2" \
    --train "results/dataset/train.gist$n.jsonl" --n-gist "$n" --instruction "$3" --seed "$seed" --passkey-digits 5 \
    --out-dir "results/pretrained-restart/gist$n" --state-dir "results/state/pretrain-restart/gist$n" \
    --log "logs/pretrain_restart/gist$n.log" >"logs/pretrain_restart/gist$n.out" 2>&1 </dev/null &
sleep 25
tail -n 3 "logs/pretrain_restart/gist$n.log"
