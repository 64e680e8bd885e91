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
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

from gistpoc.qa.chat import ChatModel

log = logging.getLogger("gistpoc.serve")


def make_handler(backend: ChatModel, model_name: str, api_key: str | None, fail: dict):
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
    backend = ChatModel(args.model)
    server = HTTPServer((args.host, args.port), make_handler(backend, args.model_name, args.api_key, {"first": args.fail_first, "status": args.fail_status, "seen": 0}))
    log.info("serving %s on http://%s:%d/v1", args.model, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
