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
# resolved train config, dicts key by key, after the settings above; "chunks" replaces the chunk sizes; "volume": true
# adds stage 1's text at volume, results/data/volume/train.jsonl as the config's workflow builds it, cut to its first
# VOLUME_TOKENS tokens (pages in a seeded random order, counted by the model's tokenizer), to the arm's window pool). Without ARMS: the
# density pair above. After training, the probe scores every arm at its chunk sizes (on the GPU there), on the first
# test documents and, for the gap between memory and skill, on the first training documents (probe_train_s<k>.json).
#
# Here (repo root):  bash bench/recon_density_ab.sh pack      -> device_in/ab/ (datasets, the train configs)
# GPU machine, after the wheels (w1, w2) and the GGUF (m1..) have arrived by device.sh unpack:
#                    bash bench/recon_density_ab.sh run       -> device_out/ab/ (adapters, logs, probe_s<k>.json)
#                    OUT=... [ADAPTERS=1] bash bench/recon_density_ab.sh collect   -> $OUT/ab/ (probes, logs, summaries; adapters as parts)
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
    rm -f "$AB/volume.jsonl.gz"
    if grep -q '"volume": *true' <<<"${ARMS:-}"; then   # the text at volume, as the workflow builds it, cut to VOLUME_TOKENS
        "$PY" -m snakemake --configfile "$CONFIG" --cores 2 --quiet all -- results/data/volume/train.jsonl
        "$PY" - results/data/volume/train.jsonl "${VOLUME_TOKENS:-8000000}" <<'PY' | gzip >"$AB/volume.jsonl.gz"
import json, random, sys
from gistpoc.model import load_tokenizer
pages = [json.loads(line) for line in open(sys.argv[1])]
random.Random(0).shuffle(pages)   # pages of every package, not the first packages' only
tok, budget, kept = load_tokenizer("results/model/base"), int(sys.argv[2]), []
n = 0
for p in pages:
    if n >= budget:
        break
    n += len(tok(p["text"], add_special_tokens=False)["input_ids"])
    kept.append(p)
    sys.stdout.write(json.dumps(p) + "\n")
print(f"volume: {len(kept)} of {len(pages)} pages, {n} tokens, from {len({p['collection'] for p in kept})} packages", file=sys.stderr)
PY
    fi
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
           "volume": {a: bool(spec.get("volume")) for a, spec in arms.items()},
           "instruction": argv[argv.index("--instruction") + 1], "seed": argv[argv.index("--seed") + 1]},
          open(f"{ab}/common.json", "w"), indent=1)
print("A/B train configs:", {k: cfg[k] for k in ("max_steps", "time_limit_minutes", "batch_size", "grad_accum")}, cfg["curriculum"]["stages"])
PY
    ;;
run)
    # SEGMENTS=k: each arm trains k segments of $MINUTES (cfg time limit), segment i > 1 warm-started from segment i-1's
    # adapter (a fresh optimizer); each segment's adapters are probed on the GPU while the next segment trains.
    # WARM_FROM=dir: segment 1 of each arm starts from dir/<arm> (an adapter collected with ADAPTERS=1 in an earlier
    # session and carried back), so a stage 1 longer than one session's GPU time goes on where it stopped. Long runs
    # go detached (setsid nohup ... run); everything lands in device_out/ab/, and `collect` copies it to $OUT.
    for f in train.gist16 test.gist16 volume; do [ -f "$AB/$f.jsonl" ] || [ ! -f "$AB/$f.jsonl.gz" ] || gunzip -k "$AB/$f.jsonl.gz"; done
    mkdir -p device_out/ab
    rm -f device_out/ab/DONE
    [ -d results/model/base ] || CONFIG=$CONFIG bash bench/paper_scale/device.sh run results/model/base >device_out/model.log 2>&1 || { tail -20 device_out/model.log; exit 1; }
    export PYTHONPATH=$PWD/.dsite:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    rc=0
    python - "$AB" "${SEGMENTS:-1}" <<'PY' || rc=$?
import json, os, subprocess, sys
ab, segments = sys.argv[1], int(sys.argv[2])
c = json.load(open(f"{ab}/common.json"))
arms = c.get("arm_chunks", {"A": c["chunks"], "B": c["chunks"]})
# the runs are CPU-bound beside each other: each arm gets its share of the cores (3 arms at 16 threads each halved the steps)
threads = str(max(1, (os.cpu_count() or 2) // (len(arms) + 1)))
env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
device = "cuda" if subprocess.run([sys.executable, "-c", "import torch; assert torch.cuda.is_available()"]).returncode == 0 else "cpu"
if device == "cpu":   # a dry run of the code path here: the packed model section is the GPU's (cuda, bfloat16)
    c["model"].update(device="cpu", dtype="float32")
probes, rc = [], 0
for seg in range(1, segments + 1):
    procs = []
    for arm, chunks in arms.items():
        argv = [sys.executable, "scripts/pretrain_gist.py", "--model", json.dumps(c["model"]), "--model-ref", "results/model/base",
                "--train-cfg", open(f"{ab}/cfg{arm}.json").read(), "--train", f"{ab}/train.gist16.jsonl", "--n-gist", "16",
                "--chunk-tokens", *chunks, "--instruction", c["instruction"], "--seed", str(int(c["seed"]) + seg - 1), "--passkey-digits", "5",
                "--out-dir", f"device_out/ab/{arm}_s{seg}", "--state-dir", f"device_out/ab/state{arm}_s{seg}", "--log", f"device_out/ab/{arm}_s{seg}.log"]
        if seg > 1:
            argv += ["--warm-start", f"device_out/ab/{arm}_s{seg - 1}"]
        elif os.environ.get("WARM_FROM"):   # a stage 1 continued across sessions: WARM_FROM/<arm> is an adapter brought back
            warm = os.path.join(os.environ["WARM_FROM"], arm)
            if not os.path.isfile(os.path.join(warm, "adapter_config.json")):
                sys.exit(f"WARM_FROM: no adapter for arm {arm} in {warm}")
            argv += ["--warm-start", warm]
        if c.get("volume", {}).get(arm):
            argv += ["--volume", f"{ab}/volume.jsonl"]
        procs.append(subprocess.Popen(argv, env=env))
    rc = max(rc, *(p.wait() for p in procs))
    ck = [a for arm, chunks in arms.items() for ch in chunks for a in ("--checkpoint", f"gist16per{ch}@{arm}_s{seg}=device_out/ab/{arm}_s{seg}")]
    for split, name in (("test", "probe"), ("train", "probe_train")):   # held-out documents, then documents it trained on
        probes.append(subprocess.Popen([sys.executable, "bench/gist_content_probe.py", "--device", device, "--model-ref", "results/model/base",
                                        "--dataset", f"{ab}/{split}.gist16.jsonl", *ck, "--docs", os.environ.get("PROBE_DOCS", "16"), "--out", f"device_out/ab/{name}_s{seg}.json"],
                                       stdout=open(f"device_out/ab/{name}_s{seg}.log", "w"), stderr=subprocess.STDOUT, env=env))
    if rc:
        break
sys.exit(max(rc, *(p.wait() for p in probes)))
PY
    echo "exit: $rc" >device_out/ab/DONE
    [ -n "${OUT:-}" ] && bash "$0" collect
    exit $rc
    ;;
collect)
    : "${OUT:?on the GPU machine}"
    [ -f device_out/ab/DONE ] && cat device_out/ab/DONE || echo "still running"
    # (a log without a match, e.g. a probe's, must not end the script under pipefail before anything is copied:
    # session 28's first collect copied nothing for that reason)
    for f in device_out/ab/*.log; do echo "== $f"; { grep -E "step [0-9]+/|Error|error|held-out" "$f" || true; } | tail -n 3; done
    mkdir -p "$OUT/ab"
    cp device_out/ab/probe_*s*.json device_out/ab/*.log "$OUT/ab/" 2>/dev/null || true
    for d in device_out/ab/*_s*/; do [ -f "$d/summary.json" ] || continue; n=$(basename "$d"); mkdir -p "$OUT/ab/$n"
        cp "$d"/summary.json "$d"/train_log.csv "$d"/eval_log.csv "$OUT/ab/$n/" 2>/dev/null || true; done
    if [ -n "${ADAPTERS:-}" ]; then   # the finished segments' adapters (~20 MB each): parts of <= 15 MB, cat them here
        # (a segment is finished once its folder holds the adapter; later segments may still be training)
        done_dirs=$(for d in device_out/ab/*_s*/; do n=$(basename "$d"); case $n in state*) continue ;; esac
                    [ -f "$d/adapter_config.json" ] && echo "$n"; done || true)
        if [ -n "$done_dirs" ]; then
            tar czf device_out/ab.tar.gz --exclude='*.log' -C device_out/ab $done_dirs && split -b 15M -d device_out/ab.tar.gz "$OUT/ab.tar.gz.part_"
            echo "adapters: $(echo $done_dirs)"
        fi
    fi
    ;;
*) sed -n 2,14p "$0"; exit 2 ;;
esac
