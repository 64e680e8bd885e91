"""The compiled answer engine (gistpoc.engine) gives the eager path's greedy tokens (fp32, CPU).

On CPU the engine runs its static-cache, batched pass without CUDA graphs; the graph capture is the same
function replayed (exercised on the GPU by bench/gpu_systems.py). Checked on the real SmolLM2 (Llama, GQA 9/3
heads) and on tiny random Llama and Qwen2 models (Qwen2: q/k/v biases)."""

from __future__ import annotations

import pytest
import torch

from gistpoc.engine import AnswerEngine
from gistpoc.gist.cache import answer_from_cache, compress_context, greedy_generate
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template

QUESTIONS = ["Who is the article about?", "In which year did he first appear on television, and in what role?",
             "Name a play he performed in.", "What is the pass key?"]


def _same(eager, compiled, atol=2e-3):
    assert compiled.token_ids == eager.token_ids
    torch.testing.assert_close(compiled.first_logits, eager.first_logits, atol=atol, rtol=1e-4)
    assert compiled.kv_bytes == eager.kv_bytes


def test_batched_answers_from_one_gist_cache_equal_eager(tokenizer, gist_model, real_text):
    model = gist_model.model
    template = prompt_template(tokenizer, "Answer from the compressed text.")
    enc = encode_prefix(tokenizer, template, real_text[:1500], gist_model.gist_ids)
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    questions = [encode_question(tokenizer, template, q) for q in QUESTIONS]
    assert len({len(q) for q in questions}) > 1  # rows of different lengths: padding is exercised
    eager = [answer_from_cache(model, cache, q, gist_model.eos_ids, 12) for q in questions]
    engine = AnswerEngine(model, max_batch=4, max_len=64)
    before = [k.clone() for k in cache.keys]
    batched = engine.answer_from_cache(cache, questions, gist_model.eos_ids, 12)
    for e, c in zip(eager, batched):
        _same(e, c)
    assert all(a.equal(b) for a, b in zip(before, cache.keys))  # the saved cache is copied, never written
    # the engine's rows are independent: one question alone gives the same tokens as in the batch
    alone = engine.answer_from_cache(cache, questions[1:2], gist_model.eos_ids, 12)[0]
    assert alone.token_ids == batched[1].token_ids
    # a smaller batch after a larger one reuses the buffers without stale slots leaking in
    assert engine.batch == 4


def test_full_prompts_equal_eager_including_the_long_prompt_pass(tokenizer, gist_model, real_text):
    model = gist_model.model
    template = prompt_template(tokenizer, "Read the following text, then answer the question.")
    prompts = []
    for n, q in ((900, QUESTIONS[0]), (400, QUESTIONS[2])):
        enc = encode_prefix(tokenizer, template, real_text[:n], [])
        prompts.append(enc.prefix_ids + encode_question(tokenizer, template, q))
    eager = [greedy_generate(model, p, 0, gist_model.eos_ids, 10) for p in prompts]
    engine = AnswerEngine(model)
    for e, c in zip(eager, engine.generate(prompts, 0, gist_model.eos_ids, 10)):
        _same(e, c)
    # one prompt with nothing cached (> 64 tokens): the causal pass full context and RAG take; a batch of two above
    # took the masked pass
    long_engine = AnswerEngine(model)
    _same(eager[0], long_engine.generate(prompts[:1], 0, gist_model.eos_ids, 10)[0])


def test_end_of_turn_and_budget_stops_match_eager(tokenizer, gist_model):
    """kv_bytes counts what the eager loop feeds back: every token when it stops at an end-of-turn id, all but the
    last when it stops at the token budget."""
    model = gist_model.model
    template = prompt_template(tokenizer, "Answer.")
    prompt = encode_prefix(tokenizer, template, "The sky is blue.", []).prefix_ids + encode_question(tokenizer, template, "What colour is the sky?")
    engine = AnswerEngine(model)
    for budget in (1, 3, 40):
        _same(greedy_generate(model, prompt, 0, gist_model.eos_ids, budget), engine.generate([prompt], 0, gist_model.eos_ids, budget)[0])
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([prompt, []], 0, gist_model.eos_ids, 4)


def _tiny(arch: str, dtype: torch.dtype = torch.float32, attn: str = "eager", device: str = "cpu"):
    """A tiny random-initialised Llama or Qwen2 (q/k/v biases, tied embeddings), seed 0."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2)
    cfg = Qwen2Config(**common, tie_word_embeddings=True) if arch == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn).to(device).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_architectures_gist_cache_and_prompts(arch):
    model = _tiny(arch)
    if arch == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(5, 290, (40,), generator=g).tolist()
    cache = compress_context(model, prefix, 30, 40)  # the last 10 tokens play the gist span
    questions = [torch.randint(5, 290, (n,), generator=g).tolist() for n in (3, 9, 6)]
    engine = AnswerEngine(model, max_batch=3)
    for e, c in zip([answer_from_cache(model, cache, q, [], 8) for q in questions], engine.answer_from_cache(cache, questions, [], 8)):
        _same(e, c, atol=1e-4)
    _same(greedy_generate(model, prefix, 0, [], 8), engine.generate([prefix], 0, [], 8)[0], atol=1e-4)


def test_an_engine_after_the_model_is_converted_uses_the_converted_weights():
    """Fused q/k/v and gate/up weights are shared by engines on one model, but not across a conversion: after
    ``model.to(dtype)`` a new engine fuses the new weights (it once kept the old fp32 ones)."""
    model = _tiny("llama")
    prompt = torch.randint(5, 290, (12,), generator=torch.Generator().manual_seed(2)).tolist()
    first = AnswerEngine(model)
    assert AnswerEngine(model).qkv[0] is first.qkv[0]  # shared while the weights are the same
    model.to(torch.float64)
    engine = AnswerEngine(model)
    assert engine.qkv[0][0].dtype == torch.float64 and engine.qkv[0] is not first.qkv[0]
    assert engine.generate([prompt], 0, [], 4)[0].token_ids == greedy_generate(model, prompt, 0, [], 4).token_ids


def test_the_fused_kernels_follow_the_environment_switch(monkeypatch):
    """GISTPOC_FAST_KERNELS: unset or auto = where they run (CUDA with Triton: never on this CPU), 0 = off, 1 = on or a
    clear error, anything else an error naming the variable; an explicit ``fast_kernels=`` wins."""
    model = _tiny("llama")
    for value in (None, "auto", "0"):
        if value is None:
            monkeypatch.delenv("GISTPOC_FAST_KERNELS", raising=False)
        else:
            monkeypatch.setenv("GISTPOC_FAST_KERNELS", value)
        assert AnswerEngine(model).short is None
    monkeypatch.setenv("GISTPOC_FAST_KERNELS", "1")
    with pytest.raises(RuntimeError, match="GISTPOC_FAST_KERNELS=1.*model is on cpu"):
        AnswerEngine(model)
    assert AnswerEngine(model, fast_kernels=False).short is None
    monkeypatch.setenv("GISTPOC_FAST_KERNELS", "yes")
    with pytest.raises(ValueError, match="GISTPOC_FAST_KERNELS must be auto, 0 or 1, got 'yes'"):
        AnswerEngine(model)


def test_divergence_gaps_scores_where_two_answers_part(tokenizer, gist_model, bench_module):
    """bench/paper_scale/divergence_gaps.py (the paper-scale engine re-check): given two answers, it finds the first
    token where they part and scores both tokens there with the float32 model; an answer that ended offers the
    end-of-turn token the model scores highest."""
    gaps = bench_module("paper_scale/divergence_gaps")
    model, tok = gist_model.model, tokenizer
    template = prompt_template(tok, "Answer the question.")
    prompt = gaps.prompt_ids(tok, template, "closed_book", {"question": QUESTIONS[0], "context": "unused"})
    greedy = greedy_generate(model, prompt, 0, [], 6).token_ids
    with torch.no_grad():
        logits = model(torch.tensor([prompt + greedy[:3]])).logits[0, -1]
    second = torch.topk(logits, 2).indices[1].item()
    a, b = tok.decode(greedy), tok.decode(greedy[:3] + [second])
    assert tok.encode(a, add_special_tokens=False) == greedy  # the case is one where re-encoding gives the ids back
    g = gaps.gap_at_parting(model, tok, prompt, a, b, gist_model.eos_ids)
    assert g["token"] == 3 and g["a_b_are_top2"] and g["float32_prefers"] == "a"
    assert g["gap_a_b"] == g["top2_gap"] == pytest.approx((logits[greedy[3]] - logits[second]).item(), abs=1e-3)
    ended = gaps.gap_at_parting(model, tok, prompt, a, tok.decode(greedy[:3]), gist_model.eos_ids)
    assert ended["token"] == 3 and ended["b_token"] in {tok.decode([i]) for i in gist_model.eos_ids}
    # a second model (the --b engine's weight format) scored at the same prefix: here one whose logit for b's token
    # is 10 higher, so it prefers b, its top token is b's, and the margin moved by 10
    class Shifted(torch.nn.Module):
        def forward(self, ids):
            out = model(ids)
            out.logits[..., second] += 10.0
            return out

    q = gaps.gap_at_parting(model, tok, prompt, a, b, gist_model.eos_ids, b_model=Shifted())
    assert q["quantized_prefers"] == "b" and q["quantized_top_is_b"]
    assert q["margin_shift"] == pytest.approx(10.0, abs=1e-3)
    assert q["quantized_margin_b_over_a"] == pytest.approx(10.0 - g["gap_a_b"], abs=1e-3)


def test_both_answerers_take_the_same_call_and_give_the_same_answers(tokenizer, gist_model, real_text):
    """gistpoc.evaluate.answerer: the eager loop and the compiled engine answer plain prompts, many questions on one
    cache and one question per cache (the budget methods' shape) through one call, with the same tokens."""
    from gistpoc.evaluate.answerer import CompiledAnswerer, EagerAnswerer, make_answerer

    model = gist_model.model
    template = prompt_template(tokenizer, "Answer from the compressed text.")
    enc = encode_prefix(tokenizer, template, real_text[:1200], gist_model.gist_ids)
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    other = compress_context(model, *(lambda e: (e.prefix_ids, e.gist_start, e.gist_end))(
        encode_prefix(tokenizer, template, real_text[1200:2000], gist_model.gist_ids)))
    questions = [encode_question(tokenizer, template, q) for q in QUESTIONS[:3]]
    prompts = [encode_prefix(tokenizer, template, real_text[:300], []).prefix_ids + q for q in questions[:2]]
    eager, compiled = make_answerer("eager", gist_model), make_answerer("compiled", gist_model, 4)
    assert isinstance(eager, EagerAnswerer) and isinstance(compiled, CompiledAnswerer)
    assert eager.facts == {"engine": "eager"} and compiled.facts == {"engine": "compiled", "fast_kernels": False}   # CPU
    assert eager.per_pass() == 1 and compiled.per_pass(100) == 4 and compiled.per_pass(10**6) == 1
    # two documents read in full (caches of different sizes: the self-study shape; the shorter row's unused slots
    # stay masked)
    docs = [encode_prefix(tokenizer, template, text, []).prefix_ids for text in (real_text[:500], real_text[500:700])]
    full = [compress_context(model, d, 0, len(d)) for d in docs]
    assert full[0].n_tokens != full[1].n_tokens
    calls = [(prompts, 0, None), (questions, cache.next_position, cache),
             (questions[:2], [cache.next_position, other.next_position], [cache, other]),
             (questions[1:3], [c.next_position for c in full], full)]
    for rows, start, prefix in calls:
        for e, c in zip(eager.generate(rows, start, 8, prefix=prefix), compiled.generate(rows, start, 8, prefix=prefix), strict=True):
            _same(e, c)
    with pytest.raises(ValueError, match="next position"):
        eager.generate(questions[:1], 0, 4, prefix=cache)
    with pytest.raises(ValueError, match="eager, compiled"):
        make_answerer("vllm", gist_model)
