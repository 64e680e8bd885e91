"""A small OpenAI-compatible chat server over any transformers chat model (stdlib HTTP), batching what arrives together.

    python -m gistpoc.serve --model results/model/base --port 8765 --api-key local-key
    python -m gistpoc.serve --gguf qwen2.5-coder-1.5b-instruct --port 8765     # a split GGUF of the model registry

Requests are handled on threads; a batcher collects those that arrive within ``--batch-wait-ms`` of each other (at most
``--max-batch``) and answers them in one left-padded ``generate`` call (``ChatModel.complete_batch``), so a client
that sends requests concurrently (the judge, the question writer with several workers) keeps the GPU busy.
``GET /v1/stats`` reports the requests served and the batch sizes.

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` in the OpenAI wire format, so the real
``openai`` client (the ``openai`` Q&A/judge backend) can be exercised offline against a real model.
Any other OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) is used the same way.
``--fail-first K --fail-status 429`` makes the first K requests fail, to exercise client retries.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gistpoc.qa.chat import ChatModel

log = logging.getLogger("gistpoc.serve")


class Batcher:
    """Collects chat requests from the handler threads and answers them in batches on one worker thread."""

    def __init__(self, backend: ChatModel, max_batch: int = 16, wait_s: float = 0.02):
        self.backend, self.max_batch, self.wait_s = backend, max_batch, wait_s
        self.pending: queue.Queue = queue.Queue()
        self.batch_sizes: list[int] = []
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, messages: list[dict], max_tokens: int, temperature: float, json_mode: bool):
        job = {"args": (messages, max_tokens, json_mode), "temperature": temperature, "done": threading.Event()}
        self.pending.put(job)
        job["done"].wait()
        if "error" in job:
            raise job["error"]
        return job["result"]

    def _run(self) -> None:
        while True:
            batch = [self.pending.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.pending.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self.batch_sizes.append(len(batch))
            for temperature in sorted({j["temperature"] for j in batch}):  # one generate call per sampling setting
                group = [j for j in batch if j["temperature"] == temperature]
                try:
                    for job, result in zip(group, self.backend.complete_batch([j["args"] for j in group], temperature)):
                        job["result"] = result
                except Exception as err:  # noqa: BLE001  (the handler answers 500 with it)
                    for job in group:
                        job["error"] = err
                for job in group:
                    job["done"].set()


def make_handler(backend: ChatModel | Batcher, model_name: str, api_key: str | None, fail: dict):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # route to logging
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped waiting (a run stopped, a timeout)
                log.warning("client %s left before its reply", self.client_address[0])

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
            elif self.path.rstrip("/") == "/v1/stats" and isinstance(backend, Batcher):
                sizes = list(backend.batch_sizes)
                self._send(200, {"requests": sum(sizes), "batches": len(sizes), "max_batch": max(sizes, default=0)})
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
            args = (messages, int(req.get("max_tokens") or 256), float(req.get("temperature") or 0.0), json_mode)
            try:
                text, n_prompt, n_new, finish = backend.submit(*args) if isinstance(backend, Batcher) else backend.complete(*args)
            except Exception as err:  # noqa: BLE001
                self._send(500, {"error": {"message": f"{type(err).__name__}: {err}", "type": "server_error"}})
                return
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
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model dir, model_ref.json or hub id")
    src.add_argument("--gguf", help="a split GGUF of the model registry (gistpoc.model_sources), converted once into the model cache")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--max-batch", type=int, default=16, help="answer at most this many requests in one generate call")
    p.add_argument("--batch-wait-ms", type=float, default=20.0, help="how long the first request of a batch waits for others")
    p.add_argument("--model-name", default="local-chat", help="name reported by /v1/models")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-key", default=None, help="require this bearer token")
    p.add_argument("--fail-first", type=int, default=0, help="answer the first K chat requests with --fail-status")
    p.add_argument("--fail-status", type=int, default=429)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = args.model
    if args.gguf:  # joined, checked and converted once (gistpoc.model_sources, gistpoc.model.convert_gguf)
        from gistpoc.model import MODEL_REF, write_model_ref
        from gistpoc.model_sources import cache_dir

        served = cache_dir() / "served" / args.gguf
        if not (served / MODEL_REF).exists():
            write_model_ref(served, {"source": "split_gguf", "gguf": args.gguf, "save_dtype": "bfloat16"})
        model = str(served)
    batcher = Batcher(ChatModel(model, args.device), args.max_batch, args.batch_wait_ms / 1000)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(batcher, args.model_name, args.api_key, {"first": args.fail_first, "status": args.fail_status, "seen": 0}))
    log.info("serving %s on http://%s:%d/v1 (batches of up to %d)", model, args.host, args.port, args.max_batch)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
