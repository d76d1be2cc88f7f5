"""The vLLM column of the serve benchmark: `lorakit serve --engine vllm` on the same workload.

Not a benchmark of its own (``serve_bench.py`` calls it; the interface is documented at the top of
that module): ``available()`` says whether vLLM can serve here (the lorakit-vllm plugin installed
and its venv set up: ``lorakit vllm setup``); ``measure(workload)`` starts one server with the
workload's adapters as ``loras/`` names (resolved inside vLLM by the lorakit resolver), warms every
name up once (vLLM loads an adapter on its first request), then drives each case with
``serve_bench.drive`` (chat, temperature 0, ``max_tokens``, ``ignore_eos``) and returns one row per
case. vLLM runs at its own default precision (``--dtype auto``: bf16 on CPU, its fast path here),
``VLLM_CPU_KVCACHE_SPACE=1``. Peak RSS is the sum of the VmHWM of lorakit's process and vLLM's
(API server and engine core), read when the cases are done.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

READY_TIMEOUT_S = 900.0


def available() -> bool:
    try:
        from lorakit_vllm.venv import find_python
    except ImportError:
        return False
    try:
        find_python()
    except Exception:  # noqa: BLE001 - any reason vLLM cannot run here means no column
        return False
    return True


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc), for their peak RSS."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _peak_rss_mb(pid: int) -> float | None:
    total = 0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024 if total else None


def measure(workload: dict) -> list[dict]:
    from benchmarks.serve_bench import ServerProcess, drive

    model_dir = workload["model_dir"]
    base_id = Path(model_dir).name
    with tempfile.TemporaryDirectory(prefix="lorakit-serve-vllm-") as tmp:
        home = Path(tmp)
        (home / "loras").mkdir()
        for name, folder in workload["adapters"].items():
            (home / "loras" / name).symlink_to(folder)
        server = ServerProcess(Path(model_dir), home, ("--engine", "vllm"), READY_TIMEOUT_S, stop_timeout=90)
        rows = []
        try:
            warm = [{"model": model, "messages": [{"role": "user", "content": "Hello"}]} for model in (None, *workload["adapters"])]
            drive(server.url, warm, 1, 4, base_id)
            for case in workload["cases"]:
                try:
                    result = drive(server.url, case["requests"], case["concurrency"], workload["max_tokens"], base_id)
                    rows.append({"name": case["name"], "concurrency": case["concurrency"], "tokens_per_s": result["tokens_per_s"],
                                 "median_latency_s": result["median_latency_s"], "peak_rss_mb": None, "error": None})
                except Exception as error:  # noqa: BLE001 - one failing case leaves the others
                    rows.append({"name": case["name"], "concurrency": case["concurrency"], "tokens_per_s": None,
                                 "median_latency_s": None, "peak_rss_mb": None, "error": f"{type(error).__name__}: {error}"})
            rss = _peak_rss_mb(server.process.pid)
            for row in rows:
                row["peak_rss_mb"] = rss
                row["startup_s"] = server.startup_s
        finally:
            server.stop()
        return rows
