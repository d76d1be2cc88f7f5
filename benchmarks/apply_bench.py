"""apply: attaching then detaching a LoRA on a loaded base, against reloading the base.

Model: the real SmolLM2-135M-Instruct, lorakit's default precision (fp32 on CPU, bf16 on CUDA).
Adapter: a PEFT LoRA made in a temp folder, r 8 / alpha 16 on q_proj, v_proj (the alpaca-lora recipe).
lorakit side: ``session.add_lora`` then ``session.remove_lora`` on a session from
``lorakit.inference.planning.open_session`` (the transformers loader, whose removal is "fast").
Reference: reloading the base the plain transformers way (AutoTokenizer + AutoModelForCausalLM
.from_pretrained, same device and dtype), which is what dropping a LoRA costs without detach. After
the warm-up the files sit in the page cache, so this is the fastest a reload gets: a strict reference.
Interleaved, one warm-up round, 5 runs with --quick, 15 otherwise.
Checked before the ratio: with the LoRA attached lorakit's logits equal PEFT's (PeftModel.from_pretrained)
and differ from the base; after remove_lora, and again after all timed runs, the logits equal the base's
bit for bit (on CPU; within the logit tolerance on GPU); the reloaded base gives the base's logits.
lorakit folds an inference LoRA into the weights lazily, right before the next forward pass (see
lorakit/merged_loras.py), so add + remove without a forward in between costs reading the adapter and
bookkeeping. A second series therefore also counts the folding: add, fold (the work the next forward
does), remove, restore — what switching to a LoRA and back costs in all; reported without a target.
Target: add + remove <= 0.05x a reload.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import device_label, interleave, progress, record
from benchmarks.models import chat_ids, load_reference, make_adapter, smollm2

NAME = "apply"
# lorakit folds inference LoRAs into fp32 weights: rounding the merged weight moves SmolLM2 logits
# (magnitude ~20) by about 1e-4 (relative 5e-6) against PEFT's unmerged path; bf16 on CUDA more.
LOGIT_TOLERANCE = {"cpu": 5e-4, "cuda": 5e-2}


def _max_diff(a, b) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def _check(session, model_dir, adapter, input_ids, dtype, tolerance) -> tuple[bool, str]:
    import torch
    from peft import PeftModel

    base = session.forward_logits(input_ids)
    session.add_lora("bench", adapter)
    attached = session.forward_logits(input_ids)
    session.remove_lora("bench")
    after = session.forward_logits(input_ids)
    model, _ = load_reference(model_dir, session.device(), dtype)
    ids = input_ids.to(session.device())
    with torch.no_grad():
        reloaded = model(input_ids=ids).logits
        expected = PeftModel.from_pretrained(model, str(adapter))(input_ids=ids).logits
    del model
    gc.collect()
    vs_peft, restored, reload_diff, effect = _max_diff(attached, expected), _max_diff(after, base), _max_diff(reloaded, base), _max_diff(attached, base)
    text = f"attached vs PEFT {vs_peft:.1e}; removed vs base {restored:.1e}; reload vs base {reload_diff:.1e}; LoRA moves logits {effect:.2f}"
    exact = 0.0 if session.device() == "cpu" else tolerance  # GPU kernels may pick other algorithms run to run
    if vs_peft > tolerance or restored > exact or reload_diff > tolerance:
        return False, text
    if effect < 10 * tolerance:
        return False, f"the LoRA barely changes the logits ({effect:.1e}): attaching it proves nothing"
    return True, text


def run(quick: bool) -> list[dict]:
    from lorakit.inference.planning import open_session
    from lorakit.loaders.devices import torch_dtype
    from lorakit.loaders.options import LoadOptions

    model_dir = smollm2()
    options = LoadOptions()
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-apply-") as tmp:
        progress("apply: making a PEFT adapter and opening a lorakit session")
        adapter = make_adapter(model_dir, Path(tmp) / "lora", seed=1)
        session, _ = open_session(None, options=options, quiet=True)
        device = session.device()
        dtype = torch_dtype(options.dtype, device)
        label = device_label(device)
        input_ids = chat_ids(session.tokenizer)
        tolerance = LOGIT_TOLERANCE["cuda" if device.startswith("cuda") else "cpu"]
        progress("apply: checking attach/remove against PEFT and the base")
        ok, checked = _check(session, model_dir, adapter, input_ids, dtype, tolerance)
        if not ok:
            return [record(NAME, "add_remove_vs_reload_s", None, None, check_ok=False, checked=checked, device=label, target="<= 0.05")]
        base_logits = session.forward_logits(input_ids)
        parts: dict[str, list[float]] = {"add": [], "remove": []}

        def attach_detach():
            parts["add"].append(session.add_lora("bench", adapter).seconds)
            parts["remove"].append(session.remove_lora("bench").seconds)

        folded: dict[str, list[float]] = {"add": [], "fold": [], "remove": [], "restore": []}

        def attach_fold_detach_restore():
            folded["add"].append(session.add_lora("bench", adapter).seconds)
            folded["fold"].append(_timed(session.merged.sync))
            folded["remove"].append(session.remove_lora("bench").seconds)
            folded["restore"].append(_timed(session.merged.sync))

        def reload():
            model, tokenizer = load_reference(model_dir, device, dtype)
            del model, tokenizer

        repeats = 5 if quick else 15
        progress(f"apply: {repeats} interleaved rounds, then {repeats} counting the folds")
        samples = interleave({"lorakit": attach_detach, "reference": reload}, repeats=repeats, warmup=1)
        with_folds = interleave({"lorakit": attach_fold_detach_restore, "reference": reload}, repeats=repeats, warmup=1)
        if _max_diff(session.forward_logits(input_ids), base_logits) > (0.0 if device == "cpu" else tolerance):
            return [record(NAME, "add_remove_vs_reload_s", None, None, check_ok=False, device=label, target="<= 0.05",
                           checked="after the timed add/remove cycles the base logits changed")]
        timed = len(samples["lorakit"])
        add_ms, remove_ms = (statistics.median(parts[key][-timed:]) * 1000 for key in ("add", "remove"))
        steps = {key: statistics.median(values[-len(with_folds["lorakit"]):]) * 1000 for key, values in folded.items()}
        return [
            record(NAME, "add_remove_vs_reload_s", [s["seconds"] for s in samples["lorakit"]], [s["seconds"] for s in samples["reference"]],
                   target="<= 0.05", checked=checked, device=label, unit="s",
                   note=f"add {add_ms:.1f} ms + remove {remove_ms:.1f} ms vs a plain transformers reload"),
            record(NAME, "add_fold_remove_restore_vs_reload_s", [s["seconds"] for s in with_folds["lorakit"]],
                   [s["seconds"] for s in with_folds["reference"]], checked=checked, device=label, unit="s",
                   note=(f"add {steps['add']:.1f} + fold {steps['fold']:.1f} + remove {steps['remove']:.1f} + restore "
                         f"{steps['restore']:.1f} ms (the folds are what the next forward passes do) vs a reload")),
        ]


def _timed(action) -> float:
    import time

    started = time.perf_counter()
    action()
    return time.perf_counter() - started
