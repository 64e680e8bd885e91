"""Q&A generation with any chat model loaded through transformers (same prompt and validation as openai)."""

from __future__ import annotations

import json

from gistpoc.qa.openai_backend import QA_SYSTEM, ResponseValidationError, _find_evidence, _strip_fences, validate_qa


class LocalChatModel:
    def __init__(self, name_or_path: str, max_new_tokens: int = 256):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gistpoc.model import resolve_model_path

        path = resolve_model_path(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self.max_new_tokens = max_new_tokens

    def chat(self, messages: list[dict]) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


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
        {"qtype": q, "question": obj[q]["question"].strip(), "answer": obj[q]["answer"].strip(), "evidence": _find_evidence(doc["text"], obj[q].get("evidence", ""))}
        for q in ("factual", "global", "reasoning")
    ]
