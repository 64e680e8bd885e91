#!/usr/bin/env bash
# Issue 29 on the GPU machine, detached, so it can run while a call carries other parts (the card is idle then):
# gemlite installed from device_in/q4 and FBGEMM from device_in/fb (bench/int4_kernels.py's header says how they are
# made), then, in a copy of the
# tree (a later call's re-sync of the tree must not touch what a running job imports), one after another:
#   1. tests/unit/test_int4.py's tests that need no SmolLM2 (the machine has none): the gemlite-vs-tinygemm CUDA
#      test and the quantiser's
#   2. bench/int4_kernels.py                          -> device_out/int4/int4_kernels.json
#   3. bench/gpu_systems.py --suites inference --kinds $KINDS (default int4-fbgemm,int4-gemlite,bf16; the file is written
#      after every kind)                              -> device_out/int4/gpu_systems.json
#   4. bench/int4_kernels.py --shapes q k v o gate up down: the layer unfused, as the engine ran int4 before its
#      projections were fused                        -> device_out/int4/int4_kernels_unfused.json
# Each step's log beside its output; device_out/int4/DONE when all have run. Steps 2-3 are timings: run them while
# nothing else uses the card (STEPS="1" runs the test alone, e.g. beside a training).
#   bash bench/int4_device.sh start        (repo root, GPU machine)
#   OUT=$OUT bash bench/int4_device.sh collect
set -euo pipefail
D=device_out/int4
case ${1:-} in
start)
    mkdir -p "$D" && rm -f "$D/DONE"
    [ -d device_out/dq4/gemlite ] || python -m pip install -q --no-index --no-deps --no-compile --target device_out/dq4 device_in/q4/*.whl
    # FBGEMM's gen-AI kernels (device_in/fb: the fbgemm-gpu-genai wheel, bench/int4_kernels.py's header), when carried
    [ -d device_out/dq4/fbgemm_gpu ] || [ ! -d device_in/fb ] || python -m pip install -q --no-index --no-deps --no-compile --target device_out/dq4 device_in/fb/*.whl
    rm -rf "$D/tree" && mkdir -p "$D/tree" && cp -r gistpoc bench tests pyproject.toml "$D/tree/"
    setsid nohup bash -c '
        cd '"$D"'/tree
        export PYTHONPATH=$PWD/../../dq4:$PWD:$PWD/../../../.dsite PYTHONUNBUFFERED=1   # .dsite: the wheels of device.sh unpack, if any
        for s in '"${STEPS:-1 2 3}"'; do
            case $s in
            1) python -m pytest -q -p no:cacheprovider tests/unit/test_int4.py -rs -k "quantize or tinygemm" >../test_int4.log 2>&1 || true ;;
            2) python bench/int4_kernels.py --out ../int4_kernels.json >../int4_kernels.log 2>&1 || true ;;
            4) python bench/int4_kernels.py --shapes q k v o gate up down --out ../int4_kernels_unfused.json \
                   >../int4_kernels_unfused.log 2>&1 || true ;;
            3) python bench/gpu_systems.py --kinds '"${KINDS:-int4-fbgemm,int4-gemlite,bf16}"' --suites inference \
                   --repeats '"${REPEATS:-3}"' --out ../gpu_systems.json >../gpu_systems.log 2>&1 || true ;;
            esac
        done
        date -u >../DONE' >/dev/null 2>&1 </dev/null &
    echo "started: steps ${STEPS:-1 2 3}"
    ;;
collect)
    : "${OUT:?on the GPU machine}"
    [ -f "$D/DONE" ] && echo "done $(cat "$D/DONE")" || echo "still running"
    mkdir -p "$OUT/int4"
    for f in "$D"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 8 "$f"; }; done
    cp "$D"/*.json "$D"/*.log "$OUT/int4/" 2>/dev/null || true
    ;;
*) sed -n 2,12p "$0"; exit 2 ;;
esac
