"""gistpoc.qa.chat.ChatModel on the real SmolLM2: a batch of requests answers each as it would alone, each reply is cut
at its own max_tokens with the finish reason said, and JSON mode starts the reply as an object."""

from __future__ import annotations

import pytest

from gistpoc.qa.chat import ChatModel


@pytest.fixture(scope="module")
def chat(model_dir):
    return ChatModel(str(model_dir), device="cpu")


ASK = [{"role": "user", "content": "Name the capital of France in one word."}]
LONG = [{"role": "system", "content": "You answer questions about geography briefly and politely."},
        {"role": "user", "content": "Which river flows through Paris? Answer in one short sentence."}]


def test_a_batch_answers_each_request_as_it_would_alone(chat):
    batch = chat.complete_batch([(ASK, 12, False), (LONG, 6, False)])
    alone = [chat.complete(ASK, 12, 0.0, False), chat.complete(LONG, 6, 0.0, False)]
    assert batch == alone                                     # greedy, padding masked: the other row changes nothing
    own = [len(chat.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]) for m in (ASK, LONG)]
    assert [b[1] for b in batch] == own and own[0] != own[1]  # prompt tokens are each request's own, not the padded width


def test_each_reply_stops_at_its_own_limit_or_its_end_of_turn(chat):
    (text, _, new, finish), (text2, _, new2, finish2) = chat.complete_batch([(LONG, 3, False), (ASK, 64, False)])
    assert new == 3 and finish == "length"
    assert finish2 == "stop" and new2 < 64                    # the end-of-turn token ends it and is counted ...
    assert "<|im_end|>" not in text2 and text2.strip()        # ... but not shown
    assert text.strip() and len(text) < len(chat.complete(LONG, 12, 0.0, False)[0])


def test_json_mode_starts_the_reply_as_an_object(chat):
    plain = chat.complete(ASK, 8, 0.0, False)
    text, prompt_tokens, _, _ = chat.complete(ASK, 8, 0.0, True)
    assert text.startswith("{")
    assert prompt_tokens == plain[1] + len(chat.tokenizer("{", add_special_tokens=False)["input_ids"])
