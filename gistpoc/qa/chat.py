"""One wrapper around a transformers chat model, shared by the local Q&A backend and gistpoc.serve."""

from __future__ import annotations

import threading


class ChatModel:
    """A transformers chat model answering chat messages greedily (or sampled): one request (``complete``) or several
    at once (``complete_batch``: left-padded, one ``generate`` call). On a GPU it runs in bfloat16, on a CPU in float32.
    The local Q&A backend and the OpenAI-compatible server (gistpoc.serve) both use it."""

    def __init__(self, model_path: str, device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from gistpoc.model import end_of_turn_ids, pick_device, resolve_model_path

        path = resolve_model_path(model_path)
        self.torch = torch
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.eos = end_of_turn_ids(self.tokenizer, self.model)
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos[0]
        self.lock = threading.Lock()

    def _prompt(self, messages: list[dict], json_mode: bool) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        if json_mode:  # start the reply as a JSON object, as JSON modes of hosted APIs effectively do
            ids = list(ids) + self.tokenizer("{", add_special_tokens=False)["input_ids"]
        return list(ids)

    def complete(self, messages: list[dict], max_tokens: int, temperature: float, json_mode: bool) -> tuple[str, int, int, str]:
        """(text, prompt tokens, new tokens, finish reason) for one request."""
        return self.complete_batch([(messages, max_tokens, json_mode)], temperature)[0]

    def complete_batch(self, requests: list[tuple[list[dict], int, bool]], temperature: float = 0.0) -> list[tuple[str, int, int, str]]:
        """Several requests (messages, max_tokens, json_mode) in one left-padded ``generate`` call. Greedy decoding of a
        row does not depend on the other rows (padding is masked), so each reply equals its own single-request reply up
        to floating-point rounding; each is cut at its own max_tokens."""
        torch = self.torch
        prompts = [self._prompt(m, j) for m, _, j in requests]
        width = max(map(len, prompts))
        input_ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        with self.lock, torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=max(m for _, m, _ in requests),
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos,
                pad_token_id=self.pad,
            )
        replies = []
        for row, (prompt, (_, max_tokens, json_mode)) in enumerate(zip(prompts, requests)):
            new = out[row, width:].tolist()[:max_tokens]
            end = next((i for i, t in enumerate(new) if t in self.eos), None)
            finish = "stop" if end is not None else "length"
            new = new[: end + 1] if end is not None else new
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            replies.append((("{" + text) if json_mode else text, len(prompt), len(new), finish))
        return replies
