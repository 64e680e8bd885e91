"""The training recipe's parts: the passkey stream (train documents only), the curriculum gate, the schedules,
the passkey scorer shared by training and evaluation."""

from __future__ import annotations

import random

import pytest

from gistpoc.evaluate.metrics import passkey_correct
from gistpoc.gist.template import prompt_template
from gistpoc.train.loop import lr_factor
from gistpoc.train.stream import Curriculum, PasskeyStream, TextPool, cue_continuation, cue_spans, effective_stages, heldout_windows


def _docs(real_text: str, n: int) -> list[tuple[str, str]]:
    """n distinct real-text documents, each marked with a word that names it."""
    paras = [p for p in real_text.split("\n") if len(p) > 200]
    return [(f"doc{i}", f"Marker{i}x marks this document. " + paras[i % len(paras)]) for i in range(n)]


@pytest.fixture(scope="module")
def setup(tokenizer, real_text):
    from gistpoc.model import add_gist_tokens

    gist_ids = add_gist_tokens(tokenizer, 4)
    template = prompt_template(tokenizer, "Compress the text.")
    docs = _docs(real_text, 9)
    train, held = docs[:6], docs[6:]
    pool = TextPool(tokenizer, [t for _, t in train], [d for d, _ in train])
    return tokenizer, gist_ids, template, train, held, pool


def test_stream_windows_come_from_training_documents_only(setup):
    tokenizer, gist_ids, template, train, held, pool = setup
    stream = PasskeyStream(tokenizer, template, gist_ids, pool, 5, seed=11)
    held_markers = {f"Marker{d[3:]}x" for d, _ in held}
    seen_docs = set()
    for step in range(40):
        rng = random.Random(step)
        text, span = pool.window(rng, 96)
        sources = pool.sources(span)
        assert sources and sources <= {d for d, _ in train}
        seen_docs |= sources
        for row in stream.windows(step, 0, 2, 96):
            ctx = tokenizer.decode(row["prefix_ids"][: row["gist_start"]])
            assert not any(m in ctx for m in held_markers)
            assert row["passkey"] in ctx and len(row["passkey"]) == 5
            assert row["gist_end"] - row["gist_start"] == 4
            # the window holds about the stage length (the sentence is budgeted in)
            assert 96 - 24 <= row["context_tokens"] <= 96 + 8
    assert len(seen_docs) >= 4          # windows move over the pool, also across document boundaries


def test_stream_is_a_pure_function_of_seed_step_and_microbatch(setup):
    tokenizer, gist_ids, template, _, _, pool = setup
    a = PasskeyStream(tokenizer, template, gist_ids, pool, 5, seed=3)
    b = PasskeyStream(tokenizer, template, gist_ids, pool, 5, seed=3)
    assert a.windows(7, 1, 2, 64) == b.windows(7, 1, 2, 64)         # what a resumed run sees again
    assert a.windows(7, 1, 2, 64) != a.windows(8, 1, 2, 64)
    kinds = [a.is_passkey(s, 0, 0.75) for s in range(400)]
    assert 0.68 < sum(kinds) / len(kinds) < 0.82
    wordings = {r["wording"] for s in range(20) for r in a.windows(s, 0, 2, 64)}
    assert wordings == {"design", "variant"}


def test_heldout_windows_spread_over_depths(setup):
    tokenizer, gist_ids, template, _, held, _ = setup
    pool = TextPool(tokenizer, [t for _, t in held], [d for d, _ in held])
    wins = heldout_windows(tokenizer, template, gist_ids, pool, [64, 128], 6, 5, seed=1)
    assert set(wins) == {64, 128} and all(len(v) == 6 for v in wins.values())
    depths = [r["depth"] for r in wins[128]]
    assert min(depths) < 0.33 and max(depths) > 0.66
    assert wins == heldout_windows(tokenizer, template, gist_ids, pool, [64, 128], 6, 5, seed=1)


def test_cue_continuation_is_context_text(setup):
    tokenizer, gist_ids, template, _, _, _ = setup
    row = PasskeyStream(tokenizer, template, gist_ids, setup[5], 5, seed=2).windows(0, 0, 1, 80)[0]
    cue, cont = cue_continuation(random.Random(0), row, 8, 24)
    ctx = row["prefix_ids"][row["gist_start"] - row["context_tokens"] : row["gist_start"]]
    joined = cue + cont
    assert len(cue) == 8 and len(cont) == 24
    assert any(ctx[i : i + 32] == joined for i in range(len(ctx) - 31))
    short = {**row, "context_tokens": 10}
    assert cue_continuation(random.Random(0), short, 8, 24) is None


def test_cue_spans_cover_a_long_window_part_by_part(setup):
    """train.aux.cue_every_tokens: one reconstruction pair per that many context tokens, each from its own part of the
    context (in order, never overlapping); 0 keeps the single pair from anywhere (the same draw as cue_continuation)."""
    tokenizer, gist_ids, template, _, _, _ = setup
    row = PasskeyStream(tokenizer, template, gist_ids, setup[5], 5, seed=3).windows(0, 0, 1, 200)[0]
    ctx = row["prefix_ids"][row["gist_start"] - row["context_tokens"] : row["gist_start"]]
    n = len(ctx)
    s0 = random.Random(4).randrange(n - 12 + 1)   # the single pair's draw, as stage 1 made it before cue_every_tokens
    assert cue_spans(random.Random(4), row, 4, 8) == [(ctx[s0 : s0 + 4], ctx[s0 + 4 : s0 + 12])] == [cue_continuation(random.Random(4), row, 4, 8)]
    pairs = cue_spans(random.Random(4), row, 4, 8, every_tokens=40)
    assert len(pairs) == n // 40 >= 4
    starts = []
    for i, (cue, cont) in enumerate(pairs):
        assert len(cue) == 4 and len(cont) == 8
        hits = [j for j in range(n - 11) if ctx[j : j + 12] == cue + cont]
        lo, hi = i * n // len(pairs), (i + 1) * n // len(pairs)
        assert any(lo <= j <= hi - 12 for j in hits)      # from inside its own part
        starts.append(min(j for j in hits if lo <= j))
    assert starts == sorted(starts) and all(b - a >= 12 for a, b in zip(starts, starts[1:]))
    assert cue_spans(random.Random(4), row, 4, 8, every_tokens=40) == pairs          # a pure function of the rng
    assert len(cue_spans(random.Random(4), row, 4, 8, every_tokens=10 * n)) == 1     # a short window still gets one
    assert cue_spans(random.Random(4), {**row, "context_tokens": 10}, 4, 8, every_tokens=40) == []


def test_effective_stages_cap_at_the_data():
    assert effective_stages([256, 512, 1024, 2048, 4096], 8000) == [256, 512, 1024, 2048, 4096]
    assert effective_stages([64, 128, 256, 512], 330) == [64, 128, 256, 330]
    assert effective_stages([], 330) == [330]


def test_gate_promotes_on_accuracy_and_survives_a_restart():
    cur = Curriculum([64, 128, 256], promote_at=0.8)
    assert cur.check(50, 0.79) is None and cur.length == 64
    assert cur.check(100, 0.8) == "promoted" and cur.length == 128
    restored = Curriculum.from_state(cur.state())          # what a resumed run rebuilds from progress.json
    assert restored.length == 128 and restored.promotions == cur.promotions
    assert restored.check(150, 0.95) == "promoted" and restored.length == 256
    assert restored.final_gate_step is None
    assert restored.check(200, 0.5) is None
    assert restored.check(250, 0.9) == "final gate passed" and restored.final_gate_step == 250
    assert restored.check(300, 1.0) is None and len(restored.promotions) == 3


def test_schedules():
    # warm-up is linear in every schedule
    assert [lr_factor(s, 4, 100, "constant") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert all(lr_factor(s, 4, 100, "constant") == 1.0 for s in range(4, 100))
    # cosine (the design's) decays right after warm-up, to min_factor
    assert lr_factor(50, 0, 100, "cosine") == pytest.approx(0.55)
    assert lr_factor(99, 0, 100, "cosine") == pytest.approx(0.1, abs=1e-3)
    # wsd: stable until the last 20 %, and only once the last stage has passed its gate
    assert lr_factor(90, 0, 100, "wsd", 0.2, 0.1, gate_step=None) == 1.0
    assert lr_factor(79, 0, 100, "wsd", 0.2, 0.1, gate_step=10) == 1.0
    assert lr_factor(80, 0, 100, "wsd", 0.2, 0.1, gate_step=10) == 1.0
    assert lr_factor(90, 0, 100, "wsd", 0.2, 0.1, gate_step=10) == pytest.approx(0.55)
    # a gate passed late postpones the decay to the gate
    assert lr_factor(85, 0, 100, "wsd", 0.2, 0.1, gate_step=90) == 1.0
    assert lr_factor(95, 0, 100, "wsd", 0.2, 0.1, gate_step=90) == pytest.approx(0.55)


@pytest.mark.parametrize("text,key,ok", [
    ("48213", "48213", 1.0),                                       # what a trained gist answers
    ("The passkey is 48213. Remember it.", "48213", 1.0),           # the design's wording echoed
    ("The pass key is 48213. 48213 is the pass key.", "48213", 1.0),  # the variant wording
    ("I believe the key was 48213!", "48213", 1.0),                 # a foreign wording
    ("4821", "48213", 0.0),
    ("482139", "48213", 0.0),
    ("The passkey is 12345, not 48213.", "48213", 0.0),              # the first number counts
    ("no number here", "48213", 0.0),
    ("", "48213", 0.0),
])
def test_one_passkey_scorer_for_training_and_evaluation(text, key, ok):
    from gistpoc.evaluate import scoring
    from gistpoc.train import loop

    assert passkey_correct(text, key) == ok
    # the training gate and the evaluation's scoring step call the same function
    assert loop.passkey_correct is passkey_correct and scoring.passkey_correct is passkey_correct


def test_continuation_targets_are_the_text_after_the_window(setup):
    """windows(..., next_tokens): each row's next_ids are the pool's tokens right after its window (not in its
    context), the targets of the continuation objective; without next_tokens the rows are unchanged."""
    tokenizer, gist_ids, template, _, _, pool = setup
    stream = PasskeyStream(tokenizer, template, gist_ids, pool, 5, seed=4)
    plain, with_next = stream.windows(3, 0, 2, 96), stream.windows(3, 0, 2, 96, next_tokens=12)
    assert all("next_ids" not in r for r in plain)
    for a, b in zip(plain, with_next):
        assert a["prefix_ids"] == b["prefix_ids"] and len(b["next_ids"]) == 12
    rng = stream.rng(3, 0, "windows")   # the same draw as windows(): the first window's span
    text, span = pool.window(rng, max(16, 96 - stream.room))
    after = pool.text[span[1]:]
    assert tokenizer.decode(with_next[0]["next_ids"]).strip()[:20] == after.strip()[:20]
    assert tokenizer.decode(with_next[0]["next_ids"]).strip() not in text


def test_each_objective_has_its_own_loss():
    """A tiny model, one example with a question, a reconstruction segment and a continuation segment: the collator
    marks each label's objective, and forward_masked's loss / aux_loss / next_loss are the mean cross-entropy over
    exactly those labels (recomputed here by hand)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from gistpoc.gist.collator import CONTINUATION, MAIN, RECONSTRUCTION, GistDataCollator, GistExample, forward_masked

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, max_position_embeddings=128)).eval()
    ex = GistExample(prefix_ids=list(range(1, 13)), gist_start=8, gist_end=12, segments=[([20, 21], [22, 23])],
                     aux_segments=[([30], [31, 32, 33])], next_segments=[([40], [41, 42])])
    batch = GistDataCollator(0)([ex])
    labels, kinds = batch["labels"][0], batch["aux"][0]
    assert kinds[labels != -100].tolist() == [MAIN] * 2 + [RECONSTRUCTION] * 3 + [CONTINUATION] * 2
    with torch.no_grad():
        out = forward_masked(model, batch)
        from gistpoc.gist.mask import to_additive

        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       attention_mask=to_additive(batch["attention_mask"], torch.float32)).logits[0]
    ce = torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="none")
    shifted = kinds[1:]
    for kind, got in ((MAIN, out.loss), (RECONSTRUCTION, out.aux_loss), (CONTINUATION, out.next_loss)):
        sel = (labels[1:] != -100) & (shifted == kind)
        assert torch.allclose(got, ce[sel].mean(), atol=1e-5), kind
    none = forward_masked(model, GistDataCollator(0)([GistExample(list(range(1, 13)), 8, 12, [([20], [22])])]))
    assert none.aux_loss is None and none.next_loss is None


def test_chunked_rows_draw_every_chunk_size_and_keep_the_key_in_the_context(setup):
    """gist.chunked: each passkey row's chunk size is drawn from the list (one checkpoint for every ratio), the row
    holds one gist span per chunk, the key is in the context (not in a gist span), the cue-continuation pairs come from
    the context alone, and held-out windows take the chunk sizes in turn."""
    tokenizer, gist_ids, template, train, held, pool = setup
    stream = PasskeyStream(tokenizer, template, gist_ids, pool, 5, seed=11, chunk_sizes=(16, 48))
    sizes = set()
    for step in range(12):
        for i, row in enumerate(stream.windows(step, 0, 2, 96)):
            chunk = stream.chunk(step, 0, i)
            sizes.add(chunk)
            cs0, gs0, ge0 = row["chunks"][0]
            assert gs0 - cs0 == min(chunk, row["context_tokens"]) and all(ge - gs == 4 for _, gs, ge in row["chunks"])
            assert len(row["chunks"]) == -(-row["context_tokens"] // chunk) and (row["gist_start"], row["gist_end"]) == row["chunks"][-1][1:]
            ctx = [t for cs, gs, _ in row["chunks"] for t in row["prefix_ids"][cs:gs]]
            assert row["passkey"] in tokenizer.decode(ctx) and not set(gist_ids) & set(ctx)
            cue, cont = cue_continuation(random.Random(step), row, 4, 8)
            assert any(ctx[j : j + 12] == cue + cont for j in range(len(ctx) - 11))
    assert sizes == {16, 48}
    assert stream.windows(3, 0, 2, 96) == stream.windows(3, 0, 2, 96)   # still a pure function of (seed, step, micro-batch)
    heldout = heldout_windows(tokenizer, template, gist_ids, pool, [96], 4, 5, seed=1, chunk_sizes=(16, 48))
    assert [r["chunks"][0][1] - r["chunks"][0][0] for r in heldout[96]] == [16, 48, 16, 48]


def test_a_large_pool_is_tokenised_in_pieces_of_whole_texts(setup, monkeypatch):
    """Stage 1's text at volume (tens of millions of tokens) is tokenised in pieces; a small pool in one call, as
    ever: same offsets as the tokenizer's, and the pieces agree with it but at the joins between texts."""
    tokenizer, _, _, train, _, pool = setup
    whole = tokenizer(pool.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert [tuple(map(int, o)) for o in pool.offsets] == [tuple(o) for o in whole]
    monkeypatch.setattr(TextPool, "PIECE_CHARS", 2 * max(len(t) for _, t in train))
    pieces = TextPool(tokenizer, [t for _, t in train], [d for d, _ in train])
    starts = pieces.offsets[:, 0]
    assert (starts[1:] >= starts[:-1]).all() and abs(pieces.n_tokens - pool.n_tokens) <= len(train)
    assert pieces.n_tokens != pool.n_tokens or not (pieces.offsets == pool.offsets).all()      # it did cut (joins tokenise apart)
    rng = random.Random(3)
    for _ in range(20):
        text, (a, b) = pieces.window(rng, 64)
        if a < b:
            assert text == pieces.text[a:b] and abs(len(tokenizer(text, add_special_tokens=False)["input_ids"]) - 64) <= 2


def test_after_reads_the_text_that_follows_a_window_and_wraps_at_the_end(setup):
    """The continuation target: the tokens right after a window, wrapping around the pool's end with a blank line,
    as tokenising the whole pool from there would give them (the way it was computed before it read only what it
    needs: a copy of an 8.7M-token pool per window halved a stage 1's speed)."""
    tokenizer, _, _, _, _, pool = setup
    n = len(pool.text)

    def whole(b, k):   # the old definition: the pool from b on, a blank line, the pool again
        return tokenizer((pool.text[b:] + "\n\n" + pool.text)[: 16 * k], add_special_tokens=False)["input_ids"][:k]

    for b in (0, n // 3, n - 16 * 24, n - 40, n - 1, n):
        assert pool.after(tokenizer, (0, b), 24) == whole(b, 24), b
    tail = pool.after(tokenizer, (0, n - 20), 24)
    assert tokenizer.decode(tail).startswith(pool.text[-20:].strip()[:10])
