"""generate: tokens/s of the base alone, base + 1 LoRA and base + 2 weighted LoRAs through lorakit.

Model: the real SmolLM2-135M-Instruct, lorakit's default precision (fp32 on CPU, bf16 on CUDA), batch 1.
Data: one chat prompt (the model's chat template), greedy decoding, exactly N new tokens
(min_new_tokens = max_new_tokens, so every side does the same work): N = 16 with --quick, 32 otherwise.
Each lorakit configuration gets its own interleaved series against the reference (A B, B A, A B ...:
who goes first alternates; 8 rounds with --quick, 12 otherwise), after a short warm-up generation on
every side. Batch-1 decoding on a shared CPU swings by 10 % from one run to the next, so many short
rounds give a steadier median ratio than a few long ones.
Adapters: PEFT LoRAs made in a temp folder: A = r 8 / alpha 16 on q_proj, v_proj (the alpaca-lora
recipe), B = r 16 / alpha 16 on q_proj, k_proj, v_proj, o_proj, C = r 8 / alpha 16 on all seven linear
layers (the QLoRA recipe); 1 LoRA is measured with A and with C, the pair runs as A:0.7 + B:0.5.
lorakit side: ``lorakit.inference.planning.open_session`` + ``lorakit.inference.generation.generate``, one session
per configuration. Reference: the plain transformers base (``AutoModelForCausalLM.from_pretrained``,
same device and dtype) calling ``model.generate``, interleaved with the lorakit sides in one process.
Checked before any ratio: lorakit's base produces exactly the reference tokens; lorakit's logits with
A and with C equal PEFT's (``PeftModel.from_pretrained``) and differ from the base; A:0.7 + B:0.5
equals PEFT's ``add_weighted_adapter(combination_type="cat")``. With one CPU thread the note also gives
the ratio per CPU-second, a second opinion less swayed by other processes than wall time.
Target: base + 1 LoRA (A and C) >= 0.97x the plain base. Base alone and 2 LoRAs: reported without a target.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import (
    device_label,
    failed,
    interleave,
    paired_ratio,
    progress,
    record,
)
from benchmarks.models import chat_ids, load_reference, make_adapter, smollm2

NAME = "generate"
# lorakit folds inference LoRAs into fp32 weights: rounding the merged weight moves SmolLM2 logits
# (magnitude ~20) by about 1e-4 (relative 5e-6) against PEFT's unmerged path; bf16 on CUDA more.
LOGIT_TOLERANCE = {"cpu": 5e-4, "cuda": 5e-2}
PAIR = (0.7, 0.5)
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _fixed_length_settings(tokens: int):
    from lorakit.inference.generation import SamplingSettings

    @dataclass
    class FixedLength(SamplingSettings):
        def generate_kwargs(self) -> dict:
            kwargs = super().generate_kwargs()
            kwargs["min_new_tokens"] = self.max_new_tokens  # no early EOS: equal work on every side
            return kwargs

    return FixedLength(max_new_tokens=tokens, greedy=True, repetition_penalty=1.0)


def _max_diff(a, b) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def _check(sessions, reference, input_ids, adapters, tolerance, base_tokens, reference_tokens):
    """Every lorakit configuration against an independent PEFT computation; returns (ok, text)."""
    import torch
    from peft import PeftModel

    if base_tokens != reference_tokens:
        return False, "lorakit base tokens differ from transformers' generate"
    ids = input_ids.to(reference.device)
    diffs, effects = {}, []
    with torch.no_grad():
        base_logits = reference(input_ids=ids).logits
        for label in SINGLES:
            peft = PeftModel.from_pretrained(reference, str(adapters[SINGLES[label]]), adapter_name="one")
            expected = peft(input_ids=ids).logits
            peft.unload()  # the reference model is plain again
            diffs[label] = _max_diff(sessions[label].forward_logits(input_ids), expected)
            effects.append(_max_diff(expected, base_logits))
        peft = PeftModel.from_pretrained(reference, str(adapters["A"]), adapter_name="one")
        peft.load_adapter(str(adapters["B"]), adapter_name="two")
        peft.add_weighted_adapter(["one", "two"], list(PAIR), adapter_name="pair", combination_type="cat")
        peft.set_adapter("pair")
        expected = peft(input_ids=ids).logits
        peft.unload()
    diffs["2 LoRAs"] = _max_diff(sessions["2 LoRAs"].forward_logits(input_ids), expected)
    shown = ", ".join(f"{label} {diff:.1e}" for label, diff in diffs.items())
    text = f"same {len(base_tokens)} greedy tokens as transformers; logits vs PEFT: {shown}; a LoRA moves logits >= {min(effects):.2f}"
    if max(diffs.values()) > tolerance:
        return False, text
    if min(effects) < 10 * tolerance:
        return False, f"a LoRA barely changes the logits ({min(effects):.1e}): it would measure nothing"
    return True, text


def _cpu_note(samples) -> str:
    """With one CPU thread, tokens per CPU-second: less swayed by other processes than wall time."""
    import torch

    if torch.get_num_threads() != 1 or any(s["cpu_seconds"] <= 0 for runs in samples.values() for s in runs):
        return ""
    rate = {name: [s["tokens"] / s["cpu_seconds"] for s in runs] for name, runs in samples.items()}
    return f"; per CPU-second ratio {paired_ratio(rate['lorakit'], rate['reference']):.3f}"


def run(quick: bool) -> list[dict]:
    import torch

    from lorakit.inference.generation import generate
    from lorakit.inference.planning import open_session
    from lorakit.loaders.devices import torch_dtype
    from lorakit.loaders.options import LoadOptions

    tokens, repeats = (16, 8) if quick else (32, 12)
    model_dir = smollm2()
    settings = _fixed_length_settings(tokens)
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-gen-") as tmp:
        progress("generate: making 3 PEFT adapters")
        adapters = {
            "A": make_adapter(model_dir, Path(tmp) / "lora-a", seed=1),
            "B": make_adapter(model_dir, Path(tmp) / "lora-b", seed=2, r=16, targets=("q_proj", "k_proj", "v_proj", "o_proj")),
            "C": make_adapter(model_dir, Path(tmp) / "lora-c", seed=3, targets=ALL_LINEAR),
        }
        options = LoadOptions()
        configs = {"base": [], "1 LoRA": [str(adapters["A"])], "1 LoRA all": [str(adapters["C"])],
                   "2 LoRAs": [f"{adapters['A']}:{PAIR[0]}", f"{adapters['B']}:{PAIR[1]}"]}
        progress("generate: opening 4 lorakit sessions and the plain transformers model")
        sessions = {label: open_session(None, loras, options=options, quiet=True)[0] for label, loras in configs.items()}
        device = sessions["base"].device()
        reference, tokenizer = load_reference(model_dir, device, torch_dtype(options.dtype, device))
        input_ids = chat_ids(tokenizer)
        label = device_label(device)
        tolerance = LOGIT_TOLERANCE["cuda" if device.startswith("cuda") else "cpu"]

        def lorakit_side(name):
            def call():
                return {"tokens": generate(sessions[name], input_ids, settings).new_tokens}
            return call

        def reference_side():
            ids = input_ids.to(device)
            with torch.no_grad():
                out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pad_token_id=tokenizer.eos_token_id, **settings.generate_kwargs())
            new = out[0, ids.shape[1]:].tolist()
            tokenizer.decode(new, skip_special_tokens=True)  # lorakit's side decodes too
            return {"tokens": len(new), "ids": new}

        progress("generate: checking every configuration against transformers and PEFT")
        with torch.no_grad():
            base_tokens = sessions["base"].generate_ids(input_ids, settings).tolist()
        ok, checked = _check(sessions, reference, input_ids, adapters, tolerance, base_tokens, reference_side()["ids"])
        if not ok:
            return [record(NAME, metric, None, None, check_ok=False, checked=checked, device=label, target=METRICS[metric][1]) for metric in METRICS]

        warm = _fixed_length_settings(4)
        for session in sessions.values():  # first calls allocate caches; a few tokens are enough to warm up
            generate(session, input_ids, warm)
        progress(f"generate: {len(METRICS)} comparisons, each {repeats} rounds of lorakit / transformers x {tokens} tokens")
        results = []
        for metric, (side, target, what) in METRICS.items():
            # One A B, B A, ... series per comparison: each lorakit run sits right next to a reference run,
            # so bursts of load from other processes hit both halves of a pair.
            samples = interleave({"lorakit": lorakit_side(side), "reference": reference_side}, repeats=repeats, warmup=0, rotate=True)
            counts = {s["tokens"] for runs in samples.values() for s in runs}
            if counts != {tokens}:
                results.append(failed(NAME, f"sides generated {sorted(counts)} tokens, expected exactly {tokens}", metric, label, target))
                continue
            speed = {name: [s["tokens"] / s["seconds"] for s in runs] for name, runs in samples.items()}
            note = f"{what} vs the plain transformers base" + (_cpu_note(samples) if device == "cpu" else "")
            results.append(record(NAME, metric, speed["lorakit"], speed["reference"], target=target, checked=checked, device=label,
                                  unit="tok/s", note=note))
        progress("generate: done")
        return results


SINGLES = {"1 LoRA": "A", "1 LoRA all": "C"}
METRICS = {
    "tokens_per_s_base": ("base", None, "lorakit, no LoRA,"),
    "tokens_per_s_1lora": ("1 LoRA", ">= 0.97", "lorakit + LoRA A (q,v)"),
    "tokens_per_s_1lora_all_linear": ("1 LoRA all", ">= 0.97", "lorakit + LoRA C (all 7 linear layers)"),
    "tokens_per_s_2lora": ("2 LoRAs", None, f"lorakit + A:{PAIR[0]} + B:{PAIR[1]}"),
}
