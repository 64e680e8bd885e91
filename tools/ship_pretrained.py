#!/usr/bin/env python
"""Copy stage-1 adapters made by pretrain_gist (results/pretrained/gist<N>/) into a folder the default config can
name in gist.pretrained: the adapter weights in bfloat16 (half the size), its config, provenance and training logs.

    python tools/ship_pretrained.py RUN_RESULTS/pretrained resources/pretrained/smollm2-135m --source-run NAME
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = ("adapter_config.json", "provenance.json", "summary.json", "train_log.csv", "eval_log.csv")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a folder of gist<N>/ adapter folders (pretrain_gist outputs)")
    p.add_argument("dest")
    p.add_argument("--source-run", required=True, help="where the run that made them is published")
    args = p.parse_args()
    for src in sorted(p for p in Path(args.src).glob("gist*") if p.is_dir()):  # not the gist<N>.sha256 manifests beside them
        dest = Path(args.dest) / src.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(src / "adapter_model.safetensors")).items()}
        save_file(state, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
        for name in KEEP:
            shutil.copy2(src / name, dest / name)
        prov = json.loads((dest / "provenance.json").read_text())
        prov.update(shipped_dtype="bfloat16", source_run=args.source_run)
        (dest / "provenance.json").write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")
        print(dest, sum(f.stat().st_size for f in dest.iterdir()) // 1024, "KiB")


if __name__ == "__main__":
    main()
