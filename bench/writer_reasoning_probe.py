#!/usr/bin/env python
"""Why the LLM writer's reasoning questions failed the evidence check: re-reads each first reasoning request and reply
from a writer request cache (results/.cache/qa as a tar.gz, e.g. bench/results/qwen_llm_qa_gpu_run/writer_cache.tar.gz)
and classifies it with the pipeline's own checks (gistpoc.qa.llm_questions): not JSON on the first try (re-asked),
a quoted passage not in the document, or both found but closer than min_part_distance of the document.

    python bench/writer_reasoning_probe.py bench/results/qwen_llm_qa_gpu_run/writer_cache.tar.gz
"""

from __future__ import annotations

import argparse
import json
import tarfile
from collections import Counter

from gistpoc.qa.llm_questions import find_span
from gistpoc.qa.openai_backend import _strip_fences, loads_lenient

# the reasoning prompt the first GPU run sent (the model chose and quoted both passages); the writer now gets two
# passages the pipeline picked (gistpoc.qa.llm_questions.reasoning_passages)
FIRST_RUN_PROMPT = (
    "You write one evaluation question that can only be answered by combining two passages far apart in the "
    "document below (e.g. how something introduced early relates to something discussed late). Reply with JSON "
    'only: {"question": str, "answer": str, "evidence_a": str, "evidence_b": str}, where evidence_a and '
    "evidence_b are the two passages, each one sentence copied exactly from the document, and the answer "
    "(1-3 sentences) needs both."
)


def probe(cache_tar: str, min_part_distance: float = 0.25, evidence_f1: float = 0.8) -> dict:
    out = Counter()
    distances = []
    with tarfile.open(cache_tar) as tar:
        for member in tar.getmembers():
            if "/openai_requests/" not in member.name or not member.isfile():
                continue
            rec = json.loads(tar.extractfile(member).read())
            msgs = rec["request"]["messages"]
            if msgs[0]["content"] != FIRST_RUN_PROMPT or len(msgs) != 2:   # first requests only (re-asks add a turn)
                continue
            out["requests"] += 1
            text = msgs[1]["content"].split("\n\n", 1)[1]   # "Document title: ...\n\n<document>"
            try:
                obj = loads_lenient(_strip_fences(rec["content"]))
            except json.JSONDecodeError:
                out["not_json_first_try"] += 1
                continue
            a = find_span(text, str(obj.get("evidence_a", "")), evidence_f1)
            b = find_span(text, str(obj.get("evidence_b", "")), evidence_f1)
            if a is None or b is None:
                out["passage_not_in_document"] += 1
                continue
            d = abs(a[0] - b[0]) / len(text)
            distances.append(d)
            out["both_found_too_close" if d < min_part_distance else "both_found_far_enough"] += 1
    out["max_distance_found"] = round(max(distances), 3) if distances else None
    return dict(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cache_tar")
    p.add_argument("--min-part-distance", type=float, default=0.25)
    a = p.parse_args()
    print(json.dumps(probe(a.cache_tar, a.min_part_distance), indent=1))
