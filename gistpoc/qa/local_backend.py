"""Q&A generation with any chat model loaded through transformers (same prompt and validation as openai)."""

from __future__ import annotations

import json

from gistpoc.qa.llm_questions import find_span
from gistpoc.qa.openai_backend import QA_SYSTEM, ResponseValidationError, _strip_fences, validate_qa


class LocalChatModel:
    """Greedy chat replies of at most ``max_new_tokens`` from a local model (``gistpoc.qa.chat.ChatModel``)."""

    def __init__(self, name_or_path: str, max_new_tokens: int = 256):
        from gistpoc.qa.chat import ChatModel

        self.model = ChatModel(name_or_path)
        self.max_new_tokens = max_new_tokens

    def chat(self, messages: list[dict]) -> str:
        return self.model.complete(messages, self.max_new_tokens, 0.0, False)[0]


def local_qa(doc: dict, chat: LocalChatModel, max_doc_chars: int = 6000) -> list[dict]:
    text = chat.chat([
        {"role": "system", "content": QA_SYSTEM},
        {"role": "user", "content": f"Document title: {doc['title']}\n\n{doc['text'][:max_doc_chars]}"},
    ])
    try:
        obj = validate_qa(json.loads(_strip_fences(text)))
    except (json.JSONDecodeError, ResponseValidationError, AttributeError) as err:
        raise ResponseValidationError(f"{doc['doc_id']}: local model reply is not valid Q&A JSON: {err}") from err
    return [
        {"qtype": q, "question": obj[q]["question"].strip(), "answer": obj[q]["answer"].strip(), "evidence": _evidence(doc["text"], obj[q].get("evidence", ""))}
        for q in ("factual", "global", "reasoning")
    ]


def _evidence(doc_text: str, quote) -> list[list[int]]:
    """The quoted passage's span in the document (``llm_questions.find_span``: exact, then ignoring spacing and quote
    marks), or none."""
    span = find_span(doc_text, quote if isinstance(quote, str) else "")
    return [span] if span else []
