"""Proofs of the gist mechanism: mask, leakage, cache equivalence, KV bytes. The model-level proofs run on the real
SmolLM2 (Llama architecture) and on a tiny random-initialised Qwen2 (q/k/v biases, tied embeddings) with the same
ChatML tokenizer: the architecture of the second base model (Qwen2.5-Coder-0.5B)."""

from __future__ import annotations

import pytest
import torch

from gistpoc.gist.cache import GistCache, answer_from_cache, compress_context, greedy_generate
from gistpoc.gist.collator import GistDataCollator, GistExample, forward_masked, layout
from gistpoc.gist.mask import batch_masks, gist_mask, to_additive
from gistpoc.gist.template import encode_answer, encode_prefix, encode_question, prompt_template


def test_mask_blocks_context_after_gist_and_other_segments():
    m = gist_mask(12, gist_start=4, gist_end=6, segments=[(6, 9), (9, 12)])
    assert not m[6:, :4].any()                    # design: mask[gist_end:, :gist_start] = False
    assert m[6:, 4:6].all()                       # every later token sees the whole gist span
    assert not m[9:12, 6:9].any()                 # second question cannot see the first
    assert m[9:12, 9:12].equal(torch.ones(3, 3, dtype=torch.bool).tril())
    assert m[:6, :6].equal(torch.ones(6, 6, dtype=torch.bool).tril())   # prefix is plain causal
    assert not m.triu(1).any()                    # never the future


def test_no_gist_span_is_plain_causal():
    assert gist_mask(5, 3, 3).equal(torch.ones(5, 5, dtype=torch.bool).tril())


def test_padded_batch_has_no_fully_masked_row():
    masks = batch_masks([gist_mask(5, 1, 2), gist_mask(8, 2, 4)], 8)
    assert masks.shape == (2, 1, 8, 8)
    assert masks.any(-1).all()
    add = to_additive(masks, torch.float32)
    assert torch.isfinite(torch.softmax(add + torch.randn(2, 1, 8, 8), -1)).all()


def _example(tokenizer, gist_ids, text, questions):
    tpl = prompt_template(tokenizer, "Compress the following text into gist tokens, then answer the question.")
    enc = encode_prefix(tokenizer, tpl, text, gist_ids)
    segs = [(encode_question(tokenizer, tpl, q), encode_answer(tokenizer, tpl, a)) for q, a in questions]
    return tpl, enc, GistExample(enc.prefix_ids, enc.gist_start, enc.gist_end, segs)


def test_collator_labels_positions(arch):
    tokenizer, gist_model = arch
    _, enc, ex = _example(tokenizer, gist_model.gist_ids, "Short text. Another sentence.", [("Q one?", "A1"), ("Q two?", "A2")])
    ids, labels, pos, spans, _ = layout(ex)
    batch = GistDataCollator(tokenizer.pad_token_id)([ex, GistExample(ex.prefix_ids[:-4] + gist_model.gist_ids, ex.gist_start, ex.gist_end, ex.segments[:1])])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].shape[1] == 1
    for s, _e in spans:
        assert pos[s] == enc.gist_end                        # each segment restarts after the gist span
    labelled = [i for i, lab in enumerate(labels) if lab != -100]
    answer_ids = ex.segments[0][1] + ex.segments[1][1]
    assert [ids[i] for i in labelled] == answer_ids           # loss on answer tokens (and end of turn) only
    out = forward_masked(gist_model.model, batch)
    assert torch.isfinite(out.loss)


def test_leakage_attention_to_context_is_zero_with_mask(arch, real_text):
    """Design failure mode 1 check: post-gist queries put exactly zero attention on the context."""
    tokenizer, gist_model = arch
    _, enc, ex = _example(tokenizer, gist_model.gist_ids, real_text[:600], [("What is this about?", "An actor.")])
    batch = GistDataCollator(tokenizer.pad_token_id)([ex])
    with torch.no_grad():
        att = forward_masked(gist_model.model, batch, output_attentions=True).attentions
        plain = dict(batch, attention_mask=batch_masks([gist_mask(batch["input_ids"].shape[1], 0, 0)], batch["input_ids"].shape[1]))
        att_plain = forward_masked(gist_model.model, plain, output_attentions=True).attentions
    for layer in att:
        assert layer[0, :, enc.gist_end :, : enc.gist_start].abs().max().item() == 0.0
        assert layer[0, :, enc.gist_end :, enc.gist_start : enc.gist_end].sum().item() > 0
    assert max(layer[0, :, enc.gist_end :, : enc.gist_start].max().item() for layer in att_plain) > 1e-3


def test_leakage_perturbing_context_after_compression(arch, real_text):
    """With the mask, post-gist logits depend on the context only through the gist KV: replacing the
    context tokens at the positions the question could see changes nothing once the gist KV is fixed,
    while the unmasked model's logits move."""
    tokenizer, gist_model = arch
    model = gist_model.model
    tpl, enc, ex = _example(tokenizer, gist_model.gist_ids, real_text[:600], [("What is this about?", "An actor.")])
    q_ids = ex.segments[0][0]
    n = len(enc.prefix_ids) + len(q_ids)
    ids = torch.tensor([enc.prefix_ids + q_ids])
    pos = torch.tensor([list(range(len(enc.prefix_ids))) + list(range(enc.gist_end, enc.gist_end + len(q_ids)))])
    mask = to_additive(gist_mask(n, enc.gist_start, enc.gist_end)[None, None], torch.float32)
    with torch.no_grad():
        full = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=True)
        # keep the gist KV of the original context, scramble every context key/value the question could read
        past = full.past_key_values
        scrambled = []
        for layer in past.layers:
            k, v = layer.keys[:, :, : len(enc.prefix_ids)].clone(), layer.values[:, :, : len(enc.prefix_ids)].clone()
            k[:, :, : enc.gist_start] = torch.randn_like(k[:, :, : enc.gist_start]) * 5
            v[:, :, : enc.gist_start] = torch.randn_like(v[:, :, : enc.gist_start]) * 5
            scrambled.append((k, v))
        from transformers import DynamicCache

        q = torch.tensor([q_ids])
        qpos = pos[:, len(enc.prefix_ids) :]
        qmask = to_additive(gist_mask(n, enc.gist_start, enc.gist_end)[None, None, len(enc.prefix_ids) :], torch.float32)
        masked = model(input_ids=q, position_ids=qpos, attention_mask=qmask, past_key_values=DynamicCache(ddp_cache_data=scrambled))
        causal = to_additive(torch.ones(len(q_ids), n, dtype=torch.bool).tril(len(enc.prefix_ids))[None, None], torch.float32)
        base_unmasked = model(input_ids=q, position_ids=qpos, attention_mask=causal, past_key_values=DynamicCache(ddp_cache_data=[(layer.keys[:, :, : len(enc.prefix_ids)], layer.values[:, :, : len(enc.prefix_ids)]) for layer in past.layers]))
        unmasked = model(input_ids=q, position_ids=qpos, attention_mask=causal, past_key_values=DynamicCache(ddp_cache_data=scrambled))
    torch.testing.assert_close(masked.logits[0], full.logits[0, len(enc.prefix_ids) :], atol=1e-4, rtol=1e-4)
    assert (unmasked.logits - base_unmasked.logits).abs().max() > 1e-2


def _masked_vs_cached(model, batch: dict, prefix_len: int, cache, q_ids: list[int]):
    """The question's logits two ways: one masked forward over prefix + question, and the question alone on the
    compressed cache (positions continuing after the prefix)."""
    with torch.no_grad():
        full = forward_masked(model, {k: v for k, v in batch.items() if k != "labels"}).logits[0, prefix_len:]
        qpos = torch.arange(cache.next_position, cache.next_position + len(q_ids))[None]
        cached = model(input_ids=torch.tensor([q_ids]), position_ids=qpos, past_key_values=cache.to_dynamic_cache()).logits[0]
    return full, cached


def test_compress_context_equivalence(arch, real_text):
    """Masked full-sequence forward == compress_context() -> gist-only cache -> question forward."""
    tokenizer, gist_model = arch
    model = gist_model.model
    _, enc, ex = _example(tokenizer, gist_model.gist_ids, real_text[:800], [("Who is the article about?", "Robert Boulter.")])
    q_ids = ex.segments[0][0]
    batch = GistDataCollator(tokenizer.pad_token_id)([GistExample(enc.prefix_ids, enc.gist_start, enc.gist_end, [(q_ids, [])])])
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    full_logits, cached_logits = _masked_vs_cached(model, batch, len(enc.prefix_ids), cache, q_ids)
    # fp32 logits of magnitude ~10-30: the two paths sum in different orders (seen 7e-4 apart on an AVX-512 CPU)
    torch.testing.assert_close(cached_logits, full_logits, atol=2e-3, rtol=1e-4)
    assert cached_logits.argmax(-1).equal(full_logits.argmax(-1))
    # greedy decoding from the cache does not mutate it: the same question twice gives the same tokens
    before = [k.clone() for k in cache.keys]
    g1 = answer_from_cache(model, cache, q_ids, gist_model.eos_ids, 8)
    g2 = answer_from_cache(model, cache, q_ids, gist_model.eos_ids, 8)
    assert g1.token_ids == g2.token_ids
    assert all(a.equal(b) for a, b in zip(before, cache.keys))
    torch.testing.assert_close(g1.first_logits, full_logits[-1], atol=2e-3, rtol=1e-4)


def test_kv_bytes_formula_and_roundtrip(tmp_path, tokenizer, gist_model, real_text):
    model = gist_model.model
    cfg = model.config
    _, enc, _ = _example(tokenizer, gist_model.gist_ids, real_text[:500], [])
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * 4  # fp32
    assert cache.nbytes == per_token * 4
    full = greedy_generate(model, enc.prefix_ids[: enc.gist_start], 0, [], max_new_tokens=1)
    assert full.kv_bytes == per_token * enc.gist_start   # one prompt pass; the single new token adds no KV
    cache.save(tmp_path / "c.safetensors")
    loaded = GistCache.load(tmp_path / "c.safetensors")
    assert loaded.nbytes == cache.nbytes and loaded.next_position == enc.gist_end
    assert all(a.equal(b) for a, b in zip(loaded.values, cache.values))


@pytest.mark.parametrize("bad", [(0, 3), (2, 2)])
def test_compress_context_rejects_bad_span(gist_model, bad):
    with pytest.raises(ValueError):
        compress_context(gist_model.model, [1, 2, 3, 4], *bad)


def test_answer_only_logits_give_the_standard_loss(tokenizer, gist_model, real_text):
    """forward_masked keeps logits from the first answer token on (memory); the loss must not change."""
    from gistpoc.gist.mask import to_additive

    _, _, ex = _example(tokenizer, gist_model.gist_ids, real_text[:300], [("Q one?", "Answer one."), ("Q two?", "Two.")])
    short = GistExample(ex.prefix_ids[:20] + gist_model.gist_ids, 20, 24, ex.segments[:1])
    batch = GistDataCollator(tokenizer.pad_token_id)([ex, short])
    with torch.no_grad():
        ours = forward_masked(gist_model.model, batch).loss
        ref = gist_model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                               attention_mask=to_additive(batch["attention_mask"], torch.float32)).loss
    torch.testing.assert_close(ours, ref)


def test_chunked_mask_each_chunk_sees_its_tokens_and_earlier_gists_only():
    """gist.layout: chunked. Head [0, 2), chunk 1 [2, 5) + gists [5, 7), chunk 2 [7, 10) + gists [10, 12), a question
    [12, 14): chunk 2 and its gists never see chunk 1's tokens but see its gists; the question sees gists only."""
    from gistpoc.gist.mask import chunked_gist_mask

    chunks = [(2, 5, 7), (7, 10, 12)]
    m = chunked_gist_mask(16, chunks, segments=[(12, 14), (14, 16)])
    assert not m.triu(1).any()
    assert not m[7:12, 2:5].any() and m[7:12, 5:7].all() and m[7:12, 0:2].all()   # chunk 2: no chunk 1, its gists, the head
    assert m[5:7, 2:5].all()                                                        # gists see their own chunk
    assert not m[12:, :2].any() and not m[12:, 2:5].any() and not m[12:, 7:10].any()  # the question: no head, no chunk
    assert m[12:14, 5:7].all() and m[12:14, 10:12].all()                            # ... every gist span
    assert not m[14:16, 12:14].any()                                                # questions isolated, as in gist_mask
    # one chunk is the whole-document layout
    assert chunked_gist_mask(12, [(4, 8, 10)], [(10, 12)]).equal(gist_mask(12, 8, 10, [(10, 12)]))
    assert chunked_gist_mask(16, chunks, hide_context=False).equal(torch.ones(16, 16, dtype=torch.bool).tril())


def test_chunked_prefix_layout_and_ratio(tokenizer, real_text):
    from gistpoc.gist.template import encode_prefix

    tpl = prompt_template(tokenizer, "Compress the following text into gist tokens, then answer the question.")
    gist_ids = [tokenizer.eos_token_id] * 4   # any ids: the layout only
    enc = encode_prefix(tokenizer, tpl, real_text[:1500], gist_ids, 64)
    ctx = len(tokenizer(real_text[:1500], add_special_tokens=False)["input_ids"])
    assert enc.context_tokens == ctx and len(enc.chunks) == -(-ctx // 64)
    assert all(gs - cs == 64 for cs, gs, _ in enc.chunks[:-1]) and all(ge - gs == 4 for _, gs, ge in enc.chunks)
    assert enc.gist_end == len(enc.prefix_ids) and enc.ratio == ctx / (4 * len(enc.chunks)) and enc.n_cached == 4 * len(enc.chunks)
    # the context's ids come back without the head or any gist, in both layouts (gistpoc.train.examples.context_spans)
    from gistpoc.train.examples import context_spans

    whole = encode_prefix(tokenizer, tpl, real_text[:1500], gist_ids)

    def context_ids(e):
        return [t for a, b in context_spans(vars(e)) for t in e.prefix_ids[a:b]]

    assert context_ids(enc) == context_ids(whole) == tokenizer(real_text[:1500], add_special_tokens=False)["input_ids"]
    assert not whole.chunks and whole.n_cached == 4 and whole.ratio == ctx / 4
    with pytest.raises(ValueError, match="chunk_tokens"):
        encode_prefix(tokenizer, tpl, "x", gist_ids, -1)


def test_compress_chunked_equals_the_masked_forward(arch, real_text):
    """Chunk-by-chunk compression (head, then each chunk on a cache of the head and earlier gists) gives the same
    question logits as one forward pass over the whole chunked sequence under chunked_gist_mask, and holds K x N
    positions."""
    from gistpoc.gist.cache import compress, compress_chunked
    from gistpoc.gist.template import encode_prefix

    tokenizer, gist_model = arch
    model = gist_model.model
    tpl = prompt_template(tokenizer, "Compress the following text into gist tokens, then answer the question.")
    enc = encode_prefix(tokenizer, tpl, real_text[:900], gist_model.gist_ids, 48)
    assert len(enc.chunks) >= 3
    q_ids = encode_question(tokenizer, tpl, "Who is the article about?")
    last = enc.chunks[-1]
    ex = GistExample(enc.prefix_ids, last[1], last[2], [(q_ids, [])], chunks=enc.chunks)
    batch = GistDataCollator(tokenizer.pad_token_id)([ex])
    cache = compress(model, enc)
    full, cached = _masked_vs_cached(model, batch, len(enc.prefix_ids), cache, q_ids)
    assert cache.n_tokens == len(gist_model.gist_ids) * len(enc.chunks) and cache.next_position == enc.gist_end
    torch.testing.assert_close(cached, full, atol=2e-3, rtol=1e-4)
    assert cached.argmax(-1).equal(full.argmax(-1))
    with pytest.raises(ValueError, match="end the prefix"):
        compress_chunked(model, enc.prefix_ids + [1], enc.chunks)
