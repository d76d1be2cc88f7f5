"""serve: output tokens/s and median latency of `lorakit serve` at concurrency 1 and 8, base / one adapter / mixed.

Model: the real SmolLM2-135M-Instruct, lorakit's default precision (fp32 on CPU). Adapters: three PEFT
LoRAs made on the spot: a = r 8 on q,v; b = r 16 on q,k,v,o; c = r 8 on all seven linear layers.
Workloads (chat requests, greedy, exactly N new tokens through vLLM's ``min_tokens`` = ``max_tokens``
(the end-of-sequence token cannot be picked, as transformers' ``min_new_tokens``) so every side does
the same work; N = 32 with --quick, 64 otherwise): ``base`` (every request the base), ``one`` (every
request adapter a), ``mixed`` (round robin over a, b, c). Concurrency 1 runs a few requests one after
another; concurrency 8 sends 16 requests from 8 client threads at once. Rounds (3 with
--quick, 4 otherwise) run every workload once, the order rotating from round to round (base one
mixed, one mixed base, ...), so load that drifts over minutes cancels out of the paired ratios.
lorakit side: a real `lorakit serve` process on 127.0.0.1 (``--max-batch 8``) driven over HTTP
(``/v1/chat/completions``); its peak RSS is the server's VmHWM. Reference: the plain sequential loop a
user writes by hand, in this process: transformers + PEFT with a, b, c loaded, ``set_adapter`` per
request (``disable_adapter`` for the base), ``model.generate`` one request at a time; its latency at
concurrency 8 is its service time queued (request i waits for the i before it).
Checked before any ratio: the server's greedy text of the first prompt for base, a, b and c equals
the plain loop's text. Targets: mixed c8 >= 3x the plain loop; one adapter c8 >= 0.97x lorakit's own
base c8; mixed c8 >= 0.85x lorakit's base c8; and, where vLLM runs, mixed c8 >= vLLM's mixed c8. The
same targets are also reported per CPU-second (the server's CPU time; the loop's process time), the
steadier measure on a shared machine, run with --threads 1.

vLLM column: the optional module ``benchmarks/serve_vllm.py`` (written with the vLLM plugin), called as

    serve_vllm.available() -> bool
        True when vLLM can serve here (installed, a device it runs on); False skips the column.
    serve_vllm.measure(workload: dict) -> list[dict]
        workload = {"model_dir": str, "adapters": {"a": "/path/to/a", "b": ..., "c": ...},
                    "max_tokens": int, "cases": [{"name": "base" | "one" | "mixed", "concurrency": 1 | 8,
                    "requests": [{"model": None (the base) or an adapter name, "messages": [...]}]}]}
        returns one row per case: {"name": str, "concurrency": int, "tokens_per_s": float | None,
                    "median_latency_s": float | None, "peak_rss_mb": float | None, "error": str | None}
    It may reuse :func:`drive` (this module) to send a case's requests to its server; every request
    must be sent with ``temperature 0``, ``max_tokens``, ``min_tokens`` = ``max_tokens`` and
    ``ignore_eos: true`` as here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import device_label, failed, progress, record, rotated
from benchmarks.models import bench_home, make_adapter, smollm2

NAME = "serve"
PROMPTS = [
    "What is the capital of France?", "Name three colours of the rainbow.", "Write a haiku about the sea.",
    "Explain what a LoRA adapter is in one sentence.", "Give me a tip for learning to cook.", "What is 12 times 7?",
    "Describe a cat to someone who has never seen one.", "Why is the sky blue?",
]
ADAPTERS = {"a": dict(r=8, targets=("q_proj", "v_proj")), "b": dict(r=16, targets=("q_proj", "k_proj", "v_proj", "o_proj")),
            "c": dict(r=8, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))}


def requests_for(workload: str, count: int) -> list[dict]:
    models = {"base": [None], "one": ["a"], "mixed": ["a", "b", "c"]}[workload]
    return [{"model": models[i % len(models)], "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
            for i in range(count)]


def drive(url: str, requests: list[dict], concurrency: int, max_tokens: int, base_id: str, api_key: str | None = None,
          timeout: float = 900) -> dict:
    """Send ``requests`` (``model`` None = ``base_id``) from ``concurrency`` threads; tokens/s, latencies, texts."""
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = httpx.Client(base_url=url, headers=headers, timeout=timeout, limits=httpx.Limits(max_connections=concurrency + 2))

    def one(item):
        body = {"model": item["model"] or base_id, "messages": item["messages"], "max_tokens": max_tokens,
                "temperature": 0, "min_tokens": max_tokens, "ignore_eos": True}
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        data = response.json()
        return time.perf_counter() - started, data["usage"]["completion_tokens"], data["choices"][0]["message"]["content"]

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, requests))
    wall = time.perf_counter() - started
    client.close()
    tokens = sum(r[1] for r in results)
    return {"tokens_per_s": tokens / wall, "median_latency_s": statistics.median(r[0] for r in results),
            "tokens": tokens, "texts": [r[2] for r in results]}


class ServerProcess:
    """`lorakit serve` in its own process, its stderr drained (one log line per request).

    ``extra_args`` (e.g. ``--engine vllm``) and the two timeouts let ``serve_vllm`` start its engine
    the same way; ``startup_s`` is how long the server took to say it was listening.
    """

    def __init__(self, model_dir: Path, home: Path, extra_args: tuple[str, ...] = (), ready_timeout: float = 300,
                 stop_timeout: float = 60):
        env = {**os.environ, "LORAKIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        argv = [sys.executable, "-c", "from lorakit.cli import main; main()", "serve", str(model_dir), *extra_args,
                "--port", "0", "--max-batch", "8"]
        self.stop_timeout = stop_timeout
        started = time.perf_counter()
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.url, self.lines = None, []
        ready = threading.Event()

        def drain():
            for line in self.process.stderr:
                self.lines.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    self.url = match.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(ready_timeout)
        self.startup_s = time.perf_counter() - started
        if self.url is None:
            self.stop()
            raise RuntimeError(" ".join(("lorakit serve", *extra_args)) + " did not start: " + "".join(self.lines[-3:]).strip())

    def peak_rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def cpu_seconds(self) -> float:
        """The server's user + system CPU time so far (it runs one torch thread with --threads 1)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.poll()


class PlainLoop:
    """The reference: transformers + PEFT, one request after another."""

    def __init__(self, model_dir: Path, adapters: dict[str, Path]):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        names = list(adapters)
        self.peft = PeftModel.from_pretrained(model, str(adapters[names[0]]), adapter_name=names[0])
        for name in names[1:]:
            self.peft.load_adapter(str(adapters[name]), adapter_name=name)

    def one(self, item: dict, max_tokens: int) -> tuple[float, str]:
        torch = self.torch
        text = self.tokenizer.apply_chat_template(item["messages"], add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                      do_sample=False, pad_token_id=self.tokenizer.eos_token_id)
        started = time.perf_counter()
        with torch.inference_mode():
            if item["model"] is None:
                with self.peft.disable_adapter():
                    out = self.peft.generate(**kwargs)
            else:
                self.peft.set_adapter(item["model"])
                out = self.peft.generate(**kwargs)
        return time.perf_counter() - started, self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def measure(self, requests: list[dict], max_tokens: int) -> dict:
        times = [self.one(item, max_tokens)[0] for item in requests]
        return {"tokens_per_s": max_tokens * len(times) / sum(times), "median_latency_s": statistics.median(times),
                "mean_s": sum(times) / len(times)}


def _vllm_rows(workload: dict) -> tuple[dict, str]:
    try:
        from benchmarks import serve_vllm  # optional: present once the vLLM plugin provides it
    except ImportError:
        return {}, "vLLM column: benchmarks/serve_vllm.py not present"
    try:
        if not serve_vllm.available():
            return {}, "vLLM column: vLLM is not available here"
        rows = serve_vllm.measure(workload)
    except Exception as error:  # noqa: BLE001 - the vLLM side must not sink lorakit's numbers
        return {}, f"vLLM column failed: {type(error).__name__}: {error}"
    return {(row["name"], row["concurrency"]): row for row in rows}, ""


def run(quick: bool) -> list[dict]:
    max_tokens = 32 if quick else 64
    solo, burst, rounds = (2, 16, 3) if quick else (4, 16, 4)  # 16 at c8: two waves, so joining mid-batch is measured too
    device = device_label("cpu")
    home = Path(tempfile.mkdtemp(prefix="lorakit-serve-bench-"))
    server = None
    try:
        bench_home()
        model_dir = smollm2()
        (home / "models").mkdir(parents=True)
        (home / "models" / model_dir.name).symlink_to(model_dir)
        adapters = {}
        for seed, (name, spec) in enumerate(ADAPTERS.items(), start=1):
            adapters[name] = make_adapter(model_dir, home / "loras" / name, seed=seed, r=spec["r"], alpha=16, targets=spec["targets"])
        progress("serve: starting lorakit serve")
        server = ServerProcess(model_dir, home)
        base_id = model_dir.name
        loop = PlainLoop(model_dir, adapters)
        check = [{"model": m, "messages": [{"role": "user", "content": PROMPTS[0]}]} for m in (None, "a", "b", "c")]
        served = drive(server.url, check, 1, max_tokens, base_id)["texts"]
        expected = [loop.one(item, max_tokens)[1] for item in check]
        ok = served == expected
        checked = "greedy text of base, a, b, c equals transformers + PEFT" if ok else \
            "server text differs from transformers + PEFT for " + ", ".join(str(c["model"] or "base") for c, s, e in zip(check, served, expected) if s != e)
        mine: dict[tuple, list] = {}
        theirs: dict[tuple, list] = {}
        for round_index in range(rounds):
            for workload in rotated(("base", "one", "mixed"), round_index):
                for concurrency, count in ((1, solo), (8, burst)):
                    progress(f"serve: round {round_index + 1} {workload} c{concurrency}")
                    cpu = server.cpu_seconds()
                    result = drive(server.url, requests_for(workload, count), concurrency, max_tokens, base_id)
                    result["tokens_per_cpu_s"] = result["tokens"] / max(server.cpu_seconds() - cpu, 1e-9)
                    mine.setdefault((workload, concurrency), []).append(result)
                progress(f"serve: round {round_index + 1} {workload} plain loop")
                cpu = time.process_time()
                sample = loop.measure(requests_for(workload, solo), max_tokens)
                sample["tokens_per_cpu_s"] = max_tokens * solo / max(time.process_time() - cpu, 1e-9)
                queued = statistics.median(sample["mean_s"] * (i + 1) for i in range(burst))  # request i waits for those before it
                theirs.setdefault((workload, 1), []).append(sample)
                theirs.setdefault((workload, 8), []).append({**sample, "median_latency_s": queued})
        rss = server.peak_rss_mb()
        workload_spec = {"model_dir": str(model_dir), "adapters": {k: str(v) for k, v in adapters.items()}, "max_tokens": max_tokens,
                         "cases": [{"name": w, "concurrency": c, "requests": requests_for(w, solo if c == 1 else burst)}
                                   for w in ("base", "one", "mixed") for c in (1, 8)]}
    except Exception as error:  # noqa: BLE001
        return [failed(NAME, f"{type(error).__name__}: {error}".splitlines()[0], device=device)]
    finally:
        exit_code = server.stop() if server is not None else None
    vllm, vllm_note = _vllm_rows(workload_spec)
    series = lambda runs, key: [r[key] for r in runs]  # noqa: E731
    out = []
    for (workload, concurrency), runs in mine.items():
        target = ">= 3" if (workload, concurrency) == ("mixed", 8) else None
        out.append(record(NAME, f"{workload} c{concurrency} tokens/s vs plain loop", series(runs, "tokens_per_s"),
                          series(theirs[(workload, concurrency)], "tokens_per_s"), target=target, checked=checked, check_ok=ok,
                          device=device, unit="tok/s"))
        out.append(record(NAME, f"{workload} c{concurrency} median latency vs plain loop", series(runs, "median_latency_s"),
                          series(theirs[(workload, concurrency)], "median_latency_s"), checked=checked, check_ok=ok, device=device, unit="s"))
    base8 = series(mine[("base", 8)], "tokens_per_s")
    cpu_note = "per CPU-second of the process doing the work: other processes on a shared machine move it far less than wall time"
    base8_cpu = series(mine[("base", 8)], "tokens_per_cpu_s")
    for label, key, unit, reference in (("tokens/s", "tokens_per_s", "tok/s", base8), ("tokens per CPU-second", "tokens_per_cpu_s", "tok/CPU-s", base8_cpu)):
        note = cpu_note if key == "tokens_per_cpu_s" else ""
        out.append(record(NAME, f"one adapter c8 {label} vs lorakit base c8", series(mine[("one", 8)], key), reference,
                          target=">= 0.97", checked=checked, check_ok=ok, device=device, unit=unit, note=note))
        out.append(record(NAME, f"mixed c8 {label} vs lorakit base c8", series(mine[("mixed", 8)], key), reference,
                          target=">= 0.85", checked=checked, check_ok=ok, device=device, unit=unit, note=note))
    out.append(record(NAME, "mixed c8 tokens per CPU-second vs plain loop", series(mine[("mixed", 8)], "tokens_per_cpu_s"),
                      series(theirs[("mixed", 8)], "tokens_per_cpu_s"), target=">= 3", checked=checked, check_ok=ok, device=device,
                      unit="tok/CPU-s", note=cpu_note))
    for (workload, concurrency), runs in mine.items():
        row = vllm.get((workload, concurrency))
        if row and row.get("tokens_per_s"):
            target = ">= 1" if (workload, concurrency) == ("mixed", 8) else None
            out.append(record(NAME, f"{workload} c{concurrency} tokens/s vs vLLM", series(runs, "tokens_per_s"), row["tokens_per_s"],
                              target=target, checked=checked, check_ok=ok, device=device, unit="tok/s",
                              note=f"vLLM peak RSS {row.get('peak_rss_mb') or 0:.0f} MB" if row.get("peak_rss_mb") else ""))
    out.append(record(NAME, "server peak RSS", rss, None, checked=f"SIGTERM exit status {exit_code}", device=device, unit="MB",
                      note=vllm_note or "vLLM column from benchmarks/serve_vllm.py"))
    shutil.rmtree(home, ignore_errors=True)
    return out
