"""merge: ``lorakit merge`` (streaming) against PEFT ``merge_and_unload()`` + ``save_pretrained()``.

Model: the real SmolLM2-135M-Instruct (fp32, one 538 MB safetensors shard, tied embeddings); and a
synthetic multi-shard Llama (metrics ending in _multishard): random weights, hidden 1536, MLP 4096,
12 heads / 4 KV heads, vocab 32000, untied head, 16 blocks (2.0 GB fp32 in 5 shards of <= 500 MB)
with --quick, 36 blocks (4.0 GB in 5 shards of <= 1 GB) otherwise, saved once by transformers'
``save_pretrained(max_shard_size=...)`` under the benchmark home and reused.
Adapter: a PEFT LoRA made in a temp folder, r 16 / alpha 32 on every linear layer of every block
(q, k, v, o, gate, up, down: 210 of 272 tensors change in SmolLM2).
lorakit side: ``python -m lorakit merge MODEL --lora ADAPTER --output DIR --no-verify`` in its own process
(the verification is a separate step, checked below instead of timed).
Reference: a fresh process that loads the base with transformers (fp32), attaches the adapter with
``PeftModel.from_pretrained``, calls ``merge_and_unload()`` and ``save_pretrained()``.
Both sides: wall time of the whole process (imports included, as a user experiences it) and its own peak
RSS, which each process reports itself (VmHWM): os.wait4's ru_maxrss would include the parent's (this
benchmark holds torch and the model), inherited at exec. Interleaved, one warm-up round, 1 timed round with --quick, 3 otherwise; CPU only
(the streaming merge reads and writes on the host whatever the device).
The multi-shard case writes both outputs with the input's shard size (lorakit ``--max-shard-size``,
PEFT's ``save_pretrained(max_shard_size=...)``).
Checked before the ratios: both outputs hold the same tensor names and values (max abs difference),
and the lorakit output's logits on a prompt equal base + unmerged LoRA (PEFT) within 1e-4; for the
multi-shard case the tensors are compared shard by shard (safetensors ``safe_open``, one tensor at a
time) and lorakit's shard index is checked (every tensor in the shard it names, total_size exact).
Targets: wall time <= 0.5x the reference (issue 8); peak RSS <= 0.6x the reference; and the
streaming promise, peak RSS <= 1.5x (largest input shard + adapter).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import child_env, interleave, progress, record, run_command
from benchmarks.models import PROMPT, bench_home, make_adapter, smollm2

NAME = "merge"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_MERGE = """
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
shards = {"max_shard_size": sys.argv[4]} if len(sys.argv) > 4 else {}
PeftModel.from_pretrained(base, sys.argv[2]).merge_and_unload().save_pretrained(sys.argv[3], **shards)
try:  # this process's own peak (VmHWM), in MB
    print([int(line.split()[1]) * 1024 / 1e6 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
except OSError:
    import resource
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
"""


def _check(model_dir: Path, adapter: Path, ours: Path, theirs: Path) -> tuple[bool, str]:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mine, reference = load_file(ours / "model.safetensors"), load_file(theirs / "model.safetensors")
    if set(mine) != set(reference):
        return False, f"tensor names differ: {sorted(set(mine) ^ set(reference))[:3]}"
    tensor_diff = max(float((mine[name] - reference[name]).abs().max()) for name in mine)
    ids = AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(ours, dtype=torch.float32)(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        unmerged = PeftModel.from_pretrained(base, str(adapter))(input_ids=ids).logits
    logit_diff = float((merged - unmerged).abs().max())
    text = f"max tensor diff vs PEFT's merge {tensor_diff:.1e}; max logit diff vs base + unmerged LoRA {logit_diff:.1e}"
    return tensor_diff <= 1e-5 and logit_diff <= 1e-4, text


# Synthetic multi-shard Llama: (blocks, shard size) by mode; about 100.7 MB per block plus 393 MB of embeddings.
SYNTHETIC = {True: (16, "500MB"), False: (36, "1GB")}
INDEX = "model.safetensors.index.json"


def synthetic_llama(quick: bool) -> tuple[Path, str]:
    """A random-weight Llama saved by transformers in several safetensors shards (built once, then reused)."""
    from lorakit.store.atomic import file_lock

    layers, shard_size = SYNTHETIC[quick]
    home = bench_home()
    folder = home / f"synthetic-llama-{layers}x1536"
    if (folder / INDEX).is_file():
        return folder, shard_size
    with file_lock(home / f".{folder.name}.lock"):
        if (folder / INDEX).is_file():
            return folder, shard_size
        progress(f"merge: building {folder.name} (once)")
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=32000, hidden_size=1536, intermediate_size=4096, num_hidden_layers=layers, num_attention_heads=12,
                             num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False)
        with torch.device("meta"):  # no default init: shapes only, then uninitialised memory and a cheap fill
            model = LlamaForCausalLM(config)
        model.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.dim() == 1:
                    parameter.fill_(1.0)  # RMSNorm weights
                else:
                    parameter.uniform_(-0.03, 0.03, generator=generator)
        building = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        model.save_pretrained(building, max_shard_size=shard_size)
        del model
        os.replace(building, folder)
    return folder, shard_size


def _weight_map(folder: Path) -> tuple[dict[str, str], int | None]:
    from safetensors import safe_open

    if (folder / INDEX).is_file():
        index = json.loads((folder / INDEX).read_text())
        return index["weight_map"], index.get("metadata", {}).get("total_size")
    with safe_open(folder / "model.safetensors", framework="pt") as handle:
        return {name: "model.safetensors" for name in handle.keys()}, None


def _check_shards(ours: Path, theirs: Path) -> tuple[bool, str]:
    """Same tensors, compared one at a time through safe_open (never a whole model in memory); lorakit's index exact."""
    import contextlib

    import torch
    from safetensors import safe_open

    mine, total_size = _weight_map(ours)
    reference, _ = _weight_map(theirs)
    if set(mine) != set(reference):
        return False, f"tensor names differ: {sorted(set(mine) ^ set(reference))[:3]}"
    files = sorted(set(mine.values()))
    if len(files) < 2:
        return False, f"lorakit wrote {len(files)} shard(s), expected several"
    worst, identical, size = 0.0, True, 0
    with contextlib.ExitStack() as stack:
        opened = {}

        def handle(folder: Path, name: str):
            if (folder, name) not in opened:
                opened[(folder, name)] = stack.enter_context(safe_open(folder / name, framework="pt"))
            return opened[(folder, name)]

        for file in files:
            listed = sorted(name for name, where in mine.items() if where == file)
            if sorted(handle(ours, file).keys()) != listed:
                return False, f"{file} does not hold exactly the tensors the index lists for it"
            for name in listed:
                a, b = handle(ours, file).get_tensor(name), handle(theirs, reference[name]).get_tensor(name)
                if a.dtype != b.dtype or a.shape != b.shape:
                    return False, f"{name}: {a.dtype} {list(a.shape)} vs PEFT's {b.dtype} {list(b.shape)}"
                size += a.numel() * a.element_size()
                if not torch.equal(a, b):
                    identical = False
                    worst = max(worst, float((a.float() - b.float()).abs().max()))
                del a, b
    if total_size != size:
        return False, f"index total_size {total_size} != {size} bytes of tensors"
    same = "bit-identical to PEFT's merge" if identical else f"max tensor diff vs PEFT's merge {worst:.1e}"
    return worst <= 1e-5, f"{len(mine)} tensors in {len(files)} shards {same}; index exact"


def _sides(model_dir: Path, adapter: Path, tmp: Path, env: dict, shard_size: str | None = None):
    ours, theirs = tmp / "lorakit", tmp / "peft"
    shard_args = ["--max-shard-size", shard_size] if shard_size else []

    def lorakit_side():
        shutil.rmtree(ours, ignore_errors=True)
        done = run_command([sys.executable, "-m", "lorakit", "merge", str(model_dir), "--lora", str(adapter), "--output", str(ours),
                            "--no-verify", "--cpu", "--json", *shard_args], env=env, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"lorakit merge exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return {"rss_mb": json.loads(done.stdout)["peak_rss_mb"], "wall": done.seconds}

    def peft_side():
        shutil.rmtree(theirs, ignore_errors=True)
        done = run_command([sys.executable, "-c", PEFT_MERGE, str(model_dir), str(adapter), str(theirs), *([shard_size] if shard_size else [])],
                           env=env, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"PEFT merge exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return {"rss_mb": float(done.stdout.strip().splitlines()[-1]), "wall": done.seconds}

    return ours, theirs, {"lorakit": lorakit_side, "reference": peft_side}


def _records(samples: dict, suffix: str, shard_mb: float, adapter_mb: float, checked: str, ok: bool, note: str) -> list[dict]:
    mine, reference = samples["lorakit"], samples["reference"]
    rss = [sample["rss_mb"] for sample in mine]
    return [
        record(NAME, f"wall_s{suffix}", [s["wall"] for s in mine], [s["wall"] for s in reference], target="<= 0.5", checked=checked,
               check_ok=ok, device="cpu", unit="s", note=note),
        record(NAME, f"peak_rss_mb{suffix}", rss, [s["rss_mb"] for s in reference], target="<= 0.6", checked=checked, check_ok=ok,
               device="cpu", unit="MB"),
        record(NAME, f"peak_rss_vs_shard_plus_adapter{suffix}", rss, shard_mb + adapter_mb, target="<= 1.5", checked=checked, check_ok=ok,
               device="cpu", unit="MB", note=f"reference column: largest input shard {shard_mb:.0f} MB + adapter {adapter_mb:.1f} MB"),
    ]


def _sizes(model_dir: Path, adapter: Path) -> tuple[float, float]:
    shard_mb = max(path.stat().st_size for path in model_dir.glob("*.safetensors")) / 1e6
    return shard_mb, (adapter / "adapter_model.safetensors").stat().st_size / 1e6


def run(quick: bool) -> list[dict]:
    model_dir = smollm2()
    env = child_env({"HF_HUB_OFFLINE": "1"})
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-merge-") as tmp:
        tmp = Path(tmp)
        adapter = make_adapter(model_dir, tmp / "lora", seed=1, r=16, alpha=32, targets=TARGETS)
        ours, theirs, sides = _sides(model_dir, adapter, tmp, env)
        progress("merge: SmolLM2-135M")
        samples = interleave(sides, repeats=repeats, warmup=1)
        ok, checked = _check(model_dir, adapter, ours, theirs)
        shard_mb, adapter_mb = _sizes(model_dir, adapter)
    note = "SmolLM2-135M fp32, r 16 LoRA on all 7 linear layers of 30 blocks; whole processes, imports included"
    records = _records(samples, "", shard_mb, adapter_mb, checked, ok, note)

    big_dir, shard_size = synthetic_llama(quick)
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-merge-") as tmp:
        tmp = Path(tmp)
        adapter = make_adapter(big_dir, tmp / "lora", seed=2, r=16, alpha=32, targets=TARGETS)
        ours, theirs, sides = _sides(big_dir, adapter, tmp, env, shard_size)
        progress(f"merge: {big_dir.name}")
        samples = interleave(sides, repeats=repeats, warmup=1)
        progress("merge: comparing the multi-shard outputs")
        ok, checked = _check_shards(ours, theirs)
        shard_mb, adapter_mb = _sizes(big_dir, adapter)
        total_gb = sum(path.stat().st_size for path in big_dir.glob("*.safetensors")) / 1e9
        shards = len(list(big_dir.glob("*.safetensors")))
    note = (f"synthetic Llama {SYNTHETIC[quick][0]} blocks, {total_gb:.1f} GB fp32 in {shards} shards (output shards <= {shard_size}), "
            "r 16 LoRA on all 7 linear layers; whole processes, imports included")
    return records + _records(samples, "_multishard", shard_mb, adapter_mb, checked, ok, note)
