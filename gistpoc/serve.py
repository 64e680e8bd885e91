"""A small OpenAI-compatible chat server over any transformers chat model (stdlib HTTP, one request at a time).

    python -m gistpoc.serve --model results/model/base --port 8765 --api-key local-key

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` in the OpenAI wire format, so the real
``openai`` client (the ``openai`` Q&A/judge backend) can be exercised offline against a real model.
Any other OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) is used the same way.
``--fail-first K --fail-status 429`` makes the first K requests fail, to exercise client retries.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

log = logging.getLogger("gistpoc.serve")


class ChatBackend:
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


def make_handler(backend: ChatBackend, model_name: str, api_key: str | None, fail: dict):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # route to logging
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._send(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self):  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "local"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            fail["seen"] += 1
            if fail["seen"] <= fail["first"]:
                self._send(fail["status"], {"error": {"message": f"injected failure {fail['seen']}/{fail['first']}", "type": "server_error"}})
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = req["messages"]
            except (ValueError, KeyError) as err:
                self._send(400, {"error": {"message": f"bad request: {err}", "type": "invalid_request_error"}})
                return
            json_mode = (req.get("response_format") or {}).get("type") in ("json_object", "json_schema")
            text, n_prompt, n_new, finish = backend.complete(messages, int(req.get("max_tokens") or 256), float(req.get("temperature") or 0.0), json_mode)
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": req.get("model", model_name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new},
            })

    return Handler


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model dir, model_ref.json or hub id")
    p.add_argument("--model-name", default="local-chat", help="name reported by /v1/models")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-key", default=None, help="require this bearer token")
    p.add_argument("--fail-first", type=int, default=0, help="answer the first K chat requests with --fail-status")
    p.add_argument("--fail-status", type=int, default=429)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = ChatBackend(args.model)
    server = HTTPServer((args.host, args.port), make_handler(backend, args.model_name, args.api_key, {"first": args.fail_first, "status": args.fail_status, "seen": 0}))
    log.info("serving %s on http://%s:%d/v1", args.model, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
