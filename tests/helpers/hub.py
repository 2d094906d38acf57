"""A local stand-in for huggingface.co (the endpoints ``create_repo`` and ``upload_folder`` use), for push tests."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHub:
    """A local stand-in for huggingface.co: just the endpoints of create_repo + upload_folder."""

    def __init__(self):
        self.requests: list[dict] = []
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._record(self, b"")
                self._reply(404, {"error": f"the stand-in Hub does not serve GET {self.path}"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub._record(self, body)
                status, answer = hub.answer(self.path.split("?")[0], body)
                self._reply(status, answer)

            def _reply(self, status, answer):
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, handler, body: bytes) -> None:
        self.requests.append(
            {
                "method": handler.command,
                "path": handler.path,
                "authorization": handler.headers.get("Authorization"),
                "body": body,
            }
        )

    def answer(self, path: str, body: bytes) -> tuple[int, dict]:
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = "/".join(p for p in (payload.get("organization"), payload["name"]) if p)
            url = f"{self.url}/{repo_id}"
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": url}
            self.repos[repo_id] = payload
            return 200, {"url": url, "name": repo_id}
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        parts = path.split("/")  # /api/models/{namespace}/{name}/{preupload|commit}/{revision}
        if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
            repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
            if repo_id not in self.repos:
                return 404, {"error": f"Repository Not Found: {repo_id}"}
            if action == "preupload":
                files = json.loads(body)["files"]
                return 200, {
                    "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                }
            if action == "commit":
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                files = {
                    line["value"]["path"]: base64.b64decode(line["value"]["content"])
                    for line in lines
                    if line["key"] == "file"
                }
                oid = f"{len(self.commits) + 1:040x}"
                self.commits.append({"repo_id": repo_id, "revision": parts[6], "header": header, "files": files})
                return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}
        return 404, {"error": f"the stand-in Hub does not serve POST {path}"}

    def close(self):
        self.server.shutdown()
        self.server.server_close()
