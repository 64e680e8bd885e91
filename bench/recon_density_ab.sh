#!/usr/bin/env bash
# Does a denser reconstruction objective make chunk-wise gists hold more of the words? An A/B of stage 1 on the GPU
# machine (issue 27: why the curve run's gists reconstruct 38-40 % of a span at every ratio).
#
# Two stage-1 trainings of the chunk-wise checkpoint (16 gists per 256 / 512 / 1,024-token chunk), side by side on one
# card, identical in everything (seed, so the very same windows in the same order, learning rate, steps, passkey
# windows of a fixed 2,048 tokens) but train.aux.cue_every_tokens: A 0 (one reconstruction pair per window, as the curve
# run trained), B $EVERY (one pair per $EVERY tokens of window). Both run scripts/pretrain_gist.py, the rule's script,
# with the train config the content config resolves to, changed only where this header says. The adapters come back;
# bench/gist_content_probe.py then scores both on the same test documents (CPU is fine).
#
# Other arms: ARMS='{"A": {"train": {...}, "chunks": [512]}, ...}' at pack time (each arm's "train" is merged into the
# resolved train config, dicts key by key, after the settings above; "chunks" replaces the chunk sizes). Without ARMS:
# the density pair above. After training, the probe scores every arm at 256 / 512 / 1,024-token chunks on the GPU.
#
# Here (repo root):  bash bench/recon_density_ab.sh pack      -> device_in/ab/ (datasets, the train configs)
# GPU machine, after the wheels (w1, w2) and the GGUF (m1..) have arrived by device.sh unpack:
#                    bash bench/recon_density_ab.sh run       -> $OUT/ab.tar.gz.part_* (adapters, logs), $OUT/probe.json
set -euo pipefail
CONFIG=${CONFIG:-config.qwen-content.yaml}
STEPS=${STEPS:-300}; MINUTES=${MINUTES:-4.5}; WINDOW=${WINDOW:-2048}; EVERY=${EVERY:-512}
AB=${AB:-device_in/ab}
case ${1:-} in
pack)
    PY=${PY:-$PWD/.venv/bin/python}
    export PATH=$(dirname "$PY"):$PATH
    mkdir -p "$AB"
    "$PY" -m snakemake --configfile "$CONFIG" --cores 2 --quiet all -- results/dataset/train.gist16.jsonl results/dataset/test.gist16.jsonl
    gzip -c results/dataset/train.gist16.jsonl >"$AB/train.gist16.jsonl.gz"   # 15 MB -> 4: it travels beside a wheel part
    gzip -c results/dataset/test.gist16.jsonl >"$AB/test.gist16.jsonl.gz"     # the probe's documents
    # the rule's own command line, as Snakemake resolves it for this config
    cmd=$("$PY" -m snakemake --configfile "$CONFIG" --cores 1 -n -p -f results/pretrained/gist16chunked 2>/dev/null)
    cmd=$(grep -m1 "python scripts/pretrain_gist.py" <<<"$cmd")
    rm -f "$AB"/cfg*.json
    "$PY" - "$cmd" "$AB" "$STEPS" "$MINUTES" "$WINDOW" "$EVERY" "${ARMS:-}" <<'PY'
import json, shlex, sys
cmd, ab, steps, minutes, window, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
arms = json.loads(sys.argv[7]) if sys.argv[7] else {"A": {"train": {"aux": {"cue_every_tokens": 0}}}, "B": {"train": {"aux": {"cue_every_tokens": every}}}}


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


argv = shlex.split(cmd[cmd.index("python scripts/pretrain_gist.py"):])
model = json.loads(argv[argv.index("--model") + 1])
cfg = json.loads(argv[argv.index("--train-cfg") + 1])
cfg.update(max_steps=steps, time_limit_minutes=minutes, passkey_share=1.0)
cfg["curriculum"].update(stages=[window], check_every_steps=10 * steps, heldout_windows=4, after_gate_steps=0)
chunks = argv[argv.index("--chunk-tokens") + 1 : argv.index("--instruction")]
for arm, spec in arms.items():
    c = merge(json.loads(json.dumps(cfg)), spec.get("train", {}))
    json.dump(c, open(f"{ab}/cfg{arm}.json", "w"), indent=1, sort_keys=True)
json.dump({"model": model, "chunks": chunks, "arm_chunks": {a: [str(x) for x in spec.get("chunks", chunks)] for a, spec in arms.items()},
           "instruction": argv[argv.index("--instruction") + 1], "seed": argv[argv.index("--seed") + 1]},
          open(f"{ab}/common.json", "w"), indent=1)
print("A/B train configs:", {k: cfg[k] for k in ("max_steps", "time_limit_minutes", "batch_size", "grad_accum")}, cfg["curriculum"]["stages"])
PY
    ;;
run)
    : "${OUT:?run on the GPU machine (OUT is the folder that comes back)}"
    for f in train test; do [ -f "$AB/$f.gist16.jsonl" ] || gunzip -k "$AB/$f.gist16.jsonl.gz"; done
    mkdir -p device_out
    [ -d results/model/base ] || CONFIG=$CONFIG bash bench/paper_scale/device.sh run results/model/base >device_out/model.log 2>&1 || { tail -20 device_out/model.log; exit 1; }
    export PYTHONPATH=$PWD/.dsite:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    mkdir -p device_out/ab
    rc=0
    python - "$AB" <<'PY' || rc=$?
import json, subprocess, sys
ab = sys.argv[1]
c = json.load(open(f"{ab}/common.json"))
procs = []
for arm, chunks in c.get("arm_chunks", {"A": c["chunks"], "B": c["chunks"]}).items():
    argv = [sys.executable, "scripts/pretrain_gist.py", "--model", json.dumps(c["model"]), "--model-ref", "results/model/base",
            "--train-cfg", open(f"{ab}/cfg{arm}.json").read(), "--train", f"{ab}/train.gist16.jsonl", "--n-gist", "16",
            "--chunk-tokens", *chunks, "--instruction", c["instruction"], "--seed", c["seed"], "--passkey-digits", "5",
            "--out-dir", f"device_out/ab/{arm}", "--state-dir", f"device_out/ab/state{arm}", "--log", f"device_out/ab/{arm}.log"]
    procs.append(subprocess.Popen(argv))
sys.exit(max(p.wait() for p in procs))
PY
    nvidia-smi --query-gpu=name,memory.used --format=csv,noheader || true
    arms=$(python -c "import json; print(' '.join(json.load(open('$AB/common.json')).get('arm_chunks', {'A': 0, 'B': 0})))")
    for arm in $arms; do grep -E "step [0-9]+/" "device_out/ab/$arm.log" | tail -n 2; done
    ck=(); for arm in $arms; do for c in 256 512 1024; do ck+=(--checkpoint "gist16per$c@$arm=device_out/ab/$arm"); done; done
    python bench/gist_content_probe.py --device "$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')" \
        --model-ref results/model/base --dataset "$AB/test.gist16.jsonl" "${ck[@]}" --docs 8 --out "$OUT/probe.json" >device_out/probe.log 2>&1 \
        && tail -n $((3 * $(wc -w <<<"$arms") + 3)) device_out/probe.log || { tail -n 20 device_out/probe.log; rc=1; }
    # two adapters are ~40 MB: parts of <= 15 MB, as a call returns files of at most 16 MiB (cat them here)
    tar czf device_out/ab.tar.gz --exclude='state*' -C device_out ab && split -b 15M -d device_out/ab.tar.gz "$OUT/ab.tar.gz.part_"
    exit $rc
    ;;
*) sed -n 2,14p "$0"; exit 2 ;;
esac
