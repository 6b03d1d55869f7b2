"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions format, for
tests. The answer depends on the last user message:

* contains ``[slow]``: sleeps ``slow_s`` seconds before answering (client timeouts);
* contains ``[500]``: always HTTP 500; ``[500x2]``: 500 for the first two requests
  of that prompt, then the canned answer (retries with backoff);
* contains ``[garbage]``: HTTP 200 with a body that is not JSON;
* contains ``[400]``: HTTP 400 (not retried);
* otherwise the first ``answers`` entry whose key occurs in the prompt (or ``none``).

Every request is recorded in ``server.requests``. Use as a context manager; it
binds an ephemeral loopback port and stops its thread on exit.
"""
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional


class FakeOpenAI:
    def __init__(self, answers: Optional[Dict[str, str]] = None, slow_s: float = 2.0):
        self.answers = dict(answers or {})
        self.slow_s = slow_s
        self.requests: List[dict] = []
        self.seen: Counter = Counter()
        self.lock = threading.Lock()
        self.httpd: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeOpenAI":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                data = json.loads(self.rfile.read(length) or b"{}")
                prompt = data.get("messages", [{}])[-1].get("content", "")
                with server.lock:
                    server.requests.append({"path": self.path, "json": data,
                                            "auth": self.headers.get("Authorization")})
                    server.seen[prompt] += 1
                    n = server.seen[prompt]
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if "[slow]" in prompt:
                    time.sleep(server.slow_s)
                if "[500]" in prompt or ("[500x2]" in prompt and n <= 2):
                    return self._send(500, b'{"error": "internal"}')
                if "[400]" in prompt:
                    return self._send(400, b'{"error": "bad request"}')
                if "[garbage]" in prompt:
                    return self._send(200, b"<html>this is not json", "text/html")
                answer = next((a for k, a in server.answers.items() if k in prompt), "none")
                body = {"id": "cmpl-1", "object": "chat.completion", "model": data.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}]}
                return self._send(200, json.dumps(body).encode("utf8"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
