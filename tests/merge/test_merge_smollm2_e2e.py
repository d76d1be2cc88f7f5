"""End to end on the real SmolLM2-135M: lorakit's streaming merge vs PEFT merge_and_unload() + save_pretrained().

Both run in their own process and report their own peak RSS (VmHWM; a child's ru_maxrss would include
this big pytest parent's, inherited at exec). The streaming merge must stay near one input shard plus
the adapter (target <= 1.5 x), write the same tensors as PEFT, and verify.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from merge_helpers import make_peft_adapter
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
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


def _run(argv, env):
    from benchmarks.harness import run_command

    done = run_command(argv, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_streaming_merge_of_smollm2(smollm2_dir, tmp_path):
    adapter = make_peft_adapter(smollm2_dir, tmp_path / "lora", r=8, alpha=16, scale=0.02,
                                targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ours = _run([sys.executable, "-m", "lorakit", "merge", str(smollm2_dir), "--lora", str(adapter), "--output", str(tmp_path / "lorakit"), "--json"], env)
    theirs = _run([sys.executable, "-c", PEFT_MERGE, str(smollm2_dir), str(adapter), str(tmp_path / "peft")], env)
    report = json.loads(ours.stdout)

    merged, reference = load_file(tmp_path / "lorakit" / "model.safetensors"), load_file(tmp_path / "peft" / "model.safetensors")
    assert set(merged) == set(reference)
    worst = max((merged[name] - reference[name]).abs().max().item() for name in merged)
    assert worst <= 1e-6
    check = report["verification"]
    assert check["max_abs_logit_diff"] <= 1e-3 and check["argmax_agreement"] == 1.0

    shard_mb = (smollm2_dir / "model.safetensors").stat().st_size / 1e6
    adapter_mb = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
    merge_peak, whole_peak, peft_peak = report["peak_rss_merge_mb"], report["peak_rss_mb"], float(theirs.stdout.strip().splitlines()[-1])
    print(
        f"\nSmolLM2 merge: lorakit {ours.seconds:.1f} s (verification included), peak RSS {merge_peak:.0f} MB while merging, "
        f"{whole_peak:.0f} MB with verification; PEFT merge_and_unload+save_pretrained {theirs.seconds:.1f} s, peak RSS {peft_peak:.0f} MB; "
        f"shard {shard_mb:.0f} MB + adapter {adapter_mb:.1f} MB; merge peak / (shard + adapter) = {merge_peak / (shard_mb + adapter_mb):.2f}; "
        f"merge peak / PEFT peak = {merge_peak / peft_peak:.2f}; max tensor diff vs PEFT {worst:.1e}; max logit diff {check['max_abs_logit_diff']:.1e}"
    )
    assert merge_peak <= 1.5 * (shard_mb + adapter_mb)
    assert merge_peak < peft_peak
