"""`sidyp healthcheck api|worker`, the container healthchecks, against a real store and a real HTTP server."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from sidyp_cli.main import main
from sidyp_core.config import Settings
from sidyp_core.store import make_store
from tests.conftest import free_port


def test_worker_check_passes_only_on_a_fresh_heartbeat_from_this_host(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDYP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SIDYP_REDIS_URL", raising=False)
    monkeypatch.setenv("SIDYP_WORKER_ALIVE_SECONDS", "5")
    store = make_store(Settings())
    assert main(["healthcheck", "worker"]) == 1
    store.worker_beat("celery@another-host:7")
    assert main(["healthcheck", "worker"]) == 1
    assert main(["healthcheck", "worker", "--any"]) == 0
    store.worker_beat(f"celery@{socket.gethostname()}:8")
    assert main(["healthcheck", "worker"]) == 0
    monkeypatch.setenv("SIDYP_WORKER_ALIVE_SECONDS", "0.001")  # the beat is now too old
    assert main(["healthcheck", "worker", "--any"]) == 1


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_api_check_asks_healthz_on_sidyp_url(monkeypatch):
    port = free_port()
    monkeypatch.setenv("SIDYP_URL", f"http://127.0.0.1:{port}")
    assert main(["healthcheck", "api", "--timeout", "1"]) == 1  # nothing listens
    server = HTTPServer(("127.0.0.1", port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert main(["healthcheck", "api"]) == 0
    finally:
        server.shutdown()
