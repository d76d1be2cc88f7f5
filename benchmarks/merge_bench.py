"""merge: ``lorakit merge`` (streaming) against PEFT ``merge_and_unload()`` + ``save_pretrained()``.

Model: the real SmolLM2-135M-Instruct (fp32, one 538 MB safetensors shard, tied embeddings).
Adapter: a PEFT LoRA made in a temp folder, r 16 / alpha 32 on every linear layer of every block
(q, k, v, o, gate, up, down: 210 of 272 tensors change).
lorakit side: ``python -m lorakit merge MODEL --lora ADAPTER --output DIR --no-verify`` in its own process
(the verification is a separate step, checked below instead of timed).
Reference: a fresh process that loads the base with transformers (fp32), attaches the adapter with
``PeftModel.from_pretrained``, calls ``merge_and_unload()`` and ``save_pretrained()``.
Both sides: wall time of the whole process (imports included, as a user experiences it) and its own peak
RSS, which each process reports itself (VmHWM): os.wait4's ru_maxrss would include the parent's (this
benchmark holds torch and the model), inherited at exec. Interleaved, one warm-up round, 1 timed round with --quick, 3 otherwise; CPU only
(the streaming merge reads and writes on the host whatever the device).
Checked before the ratios: both outputs hold the same tensor names and values (max abs difference),
and the lorakit output's logits on a prompt equal base + unmerged LoRA (PEFT) within 1e-4.
Targets: wall time <= 0.5x the reference (issue 8); peak RSS <= 0.6x the reference; and the
streaming promise, peak RSS <= 1.5x (largest input shard + adapter).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import child_env, interleave, record, run_command
from benchmarks.models import PROMPT, make_adapter, smollm2

NAME = "merge"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_MERGE = """
import sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
PeftModel.from_pretrained(base, sys.argv[2]).merge_and_unload().save_pretrained(sys.argv[3])
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


def run(quick: bool) -> list[dict]:
    import shutil

    model_dir = smollm2()
    env = child_env({"HF_HUB_OFFLINE": "1"})
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-merge-") as tmp:
        tmp = Path(tmp)
        adapter = make_adapter(model_dir, tmp / "lora", seed=1, r=16, alpha=32, targets=TARGETS)
        ours, theirs = tmp / "lorakit", tmp / "peft"

        def lorakit_side():
            shutil.rmtree(ours, ignore_errors=True)
            done = run_command([sys.executable, "-m", "lorakit", "merge", str(model_dir), "--lora", str(adapter), "--output", str(ours),
                                "--no-verify", "--cpu", "--json"], env=env, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"lorakit merge exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
            return {"rss_mb": json.loads(done.stdout)["peak_rss_mb"], "wall": done.seconds}

        def peft_side():
            shutil.rmtree(theirs, ignore_errors=True)
            done = run_command([sys.executable, "-c", PEFT_MERGE, str(model_dir), str(adapter), str(theirs)], env=env, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"PEFT merge exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
            return {"rss_mb": float(done.stdout.strip().splitlines()[-1]), "wall": done.seconds}

        samples = interleave({"lorakit": lorakit_side, "reference": peft_side}, repeats=1 if quick else 3, warmup=1)
        ok, checked = _check(model_dir, adapter, ours, theirs)
        shard_mb = max(path.stat().st_size for path in model_dir.glob("*.safetensors")) / 1e6
        adapter_mb = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
    mine, reference = samples["lorakit"], samples["reference"]
    rss = [sample["rss_mb"] for sample in mine]
    note = "SmolLM2-135M fp32, r 16 LoRA on all 7 linear layers of 30 blocks; whole processes, imports included"
    return [
        record(NAME, "wall_s", [s["wall"] for s in mine], [s["wall"] for s in reference], target="<= 0.5", checked=checked,
               check_ok=ok, device="cpu", unit="s", note=note),
        record(NAME, "peak_rss_mb", rss, [s["rss_mb"] for s in reference], target="<= 0.6", checked=checked, check_ok=ok,
               device="cpu", unit="MB"),
        record(NAME, "peak_rss_vs_shard_plus_adapter", rss, shard_mb + adapter_mb, target="<= 1.5", checked=checked, check_ok=ok,
               device="cpu", unit="MB", note=f"reference column: largest input shard {shard_mb:.0f} MB + adapter {adapter_mb:.1f} MB"),
    ]
