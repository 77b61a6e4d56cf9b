"""A real OpenAI-compatible chat-completions server in front of a real local model, with injectable faults.

Tests point `OpenAICompatibleLLM` at it, so the client's HTTP, retries, timeouts and parsing all run for real,
and the answers come from `TransformersLLM`. Faults are drawn per request from a seeded generator: the n-th
request gets the n-th draw, so a run's fault counts are the same every time even though the client's threads
race. Every request is logged (arrival time, body digest, Authorization header, what was answered).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("http_500", "http_429", "slow", "malformed")  # also "redirect" (a 302 back to itself), when named
# ... and any status as "http_NNN" (http_401: a key refused)
# ... and, when named: "trickle" (a reply sent a few bytes at a time, each well within the client's socket timeout)
# and "huge" (a 64 MiB reply)


class OpenAIServer:
    """`with OpenAIServer(llm, fault_rate=0.3) as server:` then use `server.base_url` (`http://127.0.0.1:PORT/v1`)."""

    def __init__(
        self,
        llm,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        retry_after_s: int = 1,
        slow_s: float = 3.0,
        logprobs: bool = True,
        port: int = 0,
        structured: bool = True,
    ):
        self.llm = llm
        self.fault_rate, self.faults, self.random = fault_rate, faults, random.Random(seed)
        self.retry_after_s, self.slow_s = retry_after_s, slow_s
        self.logprobs = logprobs  # False: behave like a server that ignores `logprobs`
        self.structured = structured  # False: refuse `response_format` with a 400, as some servers do
        self.log: list[dict] = []
        self._log_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one generation at a time: the model object is shared
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._log_lock:
            fault = self.random.choice(self.faults) if self.random.random() < self.fault_rate else None
            entry = {
                "time": time.monotonic(),
                "key": hashlib.sha256(body).hexdigest()[:16],
                "authorization": handler.headers.get("Authorization"),
                "fault": fault,
                "response_format": b'"response_format"' in body,
            }
            self.log.append(entry)
        if fault == "http_429":
            _reply(handler, 429, b'{"error": {"message": "slow down"}}', {"Retry-After": str(self.retry_after_s)})
        elif fault and fault.startswith("http_"):  # any other status: http_500, http_401, http_404, ...
            _reply(handler, int(fault.removeprefix("http_")), b'{"error": {"message": "injected failure"}}')
        elif fault == "slow":
            time.sleep(self.slow_s)  # past the client's timeout: it has given up by now
            _reply(handler, 200, b'{"choices": [{"message": {"role": "assistant", "content": "late"}}]}')
        elif fault == "redirect":
            _reply(handler, 302, b"", {"Location": self.base_url + "/chat/completions"})
        elif fault == "trickle":
            _trickle(handler, b'{"choices": [{"message": {"role": "assistant", "content": "' + b"x" * 200 + b'"}}]}')
        elif fault == "huge":
            _reply(handler, 200, b'{"choices": [{"message": {"role": "assistant", "content": "' + b"x" * (64 << 20))
        elif fault == "malformed":
            _reply(handler, 200, b'{"id": "chatcmpl-0", "choices": [{"message": {"role": "assist')
        elif entry["response_format"] and not self.structured:
            _reply(handler, 400, b'{"error": {"message": "response_format is not supported"}}')
        else:
            _reply(handler, 200, json.dumps(self._completion(json.loads(body))).encode())

    def _completion(self, request: dict) -> dict:
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or 16
        top = int(request.get("top_logprobs") or 0) if request.get("logprobs") and self.logprobs else 0
        schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
        with self._model_lock:  # the local backend holds the reply to the schema its own way
            completion = self.llm.generate([request["messages"]], max_tokens, logprobs=top, schema=schema)[0]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": "stop",
            "logprobs": {"content": completion.logprobs} if completion.logprobs else None,
        }
        return {
            "id": "chatcmpl-local",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", ""),
            "choices": [choice],
        }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            _reply(self, 404, b'{"error": {"message": "not found"}}')
            return
        self.server.app.answer(self, body)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


def _trickle(handler: BaseHTTPRequestHandler, payload: bytes) -> None:
    try:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        for at in range(0, len(payload), 4):
            handler.wfile.write(payload[at : at + 4])
            handler.wfile.flush()
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict | None = None) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
        pass
