"""Fake ``python -m vllm.entrypoints.openai.api_server``: /health, an access line, SIGTERM -> exit 0.

It records what it was started with (argv, environment, the vLLM general plugins it can see) in
``$FAKE_VLLM_RECORD`` so the tests check the plumbing, not vLLM.
"""

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib.metadata import entry_points

args = sys.argv[1:]
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
allowed = os.environ.get("VLLM_PLUGINS", "").split(",")
plugins = sorted(f"{ep.name}={ep.value}" for ep in entry_points(group="vllm.general_plugins") if ep.name in allowed)
record = {"argv": args, "plugins": plugins, "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM", "LORAKIT", "PYTHONPATH"))}}
with open(os.environ["FAKE_VLLM_RECORD"], "w") as out:
    json.dump(record, out)
if os.environ.get("FAKE_VLLM_FAIL"):
    print("ERROR 12-02 10:00:00 [core.py:1] ValueError: fake failure before listening", flush=True)
    sys.exit(1)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, fmt, *values):
        # uvicorn's access-line shape, which the engine forwards to stderr
        print(f'INFO:     127.0.0.1:1 - "{self.command} {self.path} HTTP/1.1" 200 OK', flush=True)


def on_term(signum, frame):
    with open(os.environ["FAKE_VLLM_RECORD"] + ".term", "w") as out:
        out.write("SIGTERM")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("INFO banner that must stay in the log", flush=True)
time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "0")))
HTTPServer((host, port), Handler).serve_forever()
