"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for judge tests.

``FakeChatServer(answer)`` serves ``POST <root>/chat/completions``; ``answer(prompt) -> str``
scripts the reply (raise ``FakeFailure(status)`` to answer with an HTTP error). Every request
body is kept in ``requests``. It binds an ephemeral port, serves from a daemon thread, and
shuts itself down after ``max_s`` seconds even if a test forgets to stop it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeFailure(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class FakeChatServer:
    def __init__(self, answer: Callable[[str], str], max_s: float = 60.0):
        self.answer = answer
        self.requests: list[dict] = []
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server_self.requests.append({"path": self.path, "body": body,
                                             "auth": self.headers.get("Authorization")})
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                prompt = body["messages"][-1]["content"]
                try:
                    content = server_self.answer(prompt)
                except FakeFailure as err:
                    return self._send(err.status, {"error": {"message": "scripted failure"}})
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._timer = threading.Timer(max_s, self.stop)
        self._timer.daemon = True

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._timer.cancel()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def prompts(self) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in self.requests]
