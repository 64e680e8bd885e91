"""One wrapper around a transformers chat model, shared by the local Q&A backend and gistpoc.serve."""

from __future__ import annotations

import threading


class ChatModel:
    """A transformers chat model answering chat messages greedily (or sampled), one request at a time: the local Q&A
    backend and the OpenAI-compatible test server (gistpoc.serve) both use it."""

    def __init__(self, model_path: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gistpoc.model import end_of_turn_ids, resolve_model_path

        path = resolve_model_path(model_path)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self.eos = end_of_turn_ids(self.tokenizer, self.model)
        self.lock = threading.Lock()

    def complete(self, messages: list[dict], max_tokens: int, temperature: float, json_mode: bool) -> tuple[str, int, int, str]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        prompt = ids["input_ids"]
        if json_mode:  # start the reply as a JSON object, as JSON modes of hosted APIs effectively do
            brace = self.tokenizer("{", add_special_tokens=False, return_tensors="pt")["input_ids"]
            prompt = self.torch.cat([prompt, brace], dim=1)
        with self.lock, self.torch.no_grad():
            out = self.model.generate(
                input_ids=prompt,
                attention_mask=self.torch.ones_like(prompt),
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos,
                pad_token_id=self.tokenizer.pad_token_id or self.eos[0],
            )
        new = out[0, prompt.shape[1]:]
        finish = "stop" if len(new) and int(new[-1]) in self.eos else "length"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return ("{" + text) if json_mode else text, prompt.shape[1], len(new), finish
