"""generate: tokens/s of the base alone, base + 1 LoRA and base + 2 weighted LoRAs through lorakit.

Model: the real SmolLM2-135M-Instruct, lorakit's default precision (fp32 on CPU, bf16 on CUDA), batch 1.
Data: one chat prompt (the model's chat template), greedy decoding, exactly N new tokens
(min_new_tokens = max_new_tokens, so every side does the same work): N = 16 with --quick, 64 otherwise;
5 interleaved rounds with --quick, 7 otherwise (the order rotates each round), after a short
warm-up generation on every side.
Adapters: PEFT LoRAs made in a temp folder: A = r 8 / alpha 16 on q_proj, v_proj (the alpaca-lora
recipe), B = r 16 / alpha 16 on q_proj, k_proj, v_proj, o_proj; the pair runs as A:0.7 + B:0.5.
lorakit side: ``lorakit.session_factory.open_session`` + ``lorakit.generation.generate``, one session
per configuration. Reference: the plain transformers base (``AutoModelForCausalLM.from_pretrained``,
same device and dtype) calling ``model.generate``, interleaved with the lorakit sides in one process.
Checked before any ratio: lorakit's base produces exactly the reference tokens; lorakit's logits with
A equal PEFT's (``PeftModel.from_pretrained``) and differ from the base; A:0.7 + B:0.5 equals PEFT's
``add_weighted_adapter(combination_type="cat")``.
Target: base + 1 LoRA >= 0.97x the plain base. The base-alone and 2-LoRA ratios are reported without a target.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import device_label, failed, interleave, record
from benchmarks.models import chat_ids, load_reference, make_adapter, smollm2

NAME = "generate"
LOGIT_TOLERANCE = {"cpu": 1e-4, "cuda": 5e-2}  # bf16 on CUDA rounds differently along the two paths
PAIR = (0.7, 0.5)


def _fixed_length_settings(tokens: int):
    from lorakit.generation import SamplingSettings

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
    with torch.no_grad():
        base_logits = reference(input_ids=ids).logits
        peft = PeftModel.from_pretrained(reference, str(adapters[0]), adapter_name="one")
        one_logits = peft(input_ids=ids).logits
        peft.load_adapter(str(adapters[1]), adapter_name="two")
        peft.add_weighted_adapter(["one", "two"], list(PAIR), adapter_name="pair", combination_type="cat")
        peft.set_adapter("pair")
        pair_logits = peft(input_ids=ids).logits
        peft.unload()  # the reference model is plain again
    one_diff = _max_diff(sessions["1 LoRA"].forward_logits(input_ids), one_logits)
    pair_diff = _max_diff(sessions["2 LoRAs"].forward_logits(input_ids), pair_logits)
    effect = _max_diff(one_logits, base_logits)
    text = f"same {len(base_tokens)} greedy tokens; logits vs PEFT: 1 LoRA {one_diff:.1e}, 2 LoRAs {pair_diff:.1e} (LoRA moves logits {effect:.2f})"
    if one_diff > tolerance or pair_diff > tolerance:
        return False, text
    if effect < 10 * tolerance:
        return False, f"the LoRA barely changes the logits ({effect:.1e}): it would measure nothing"
    return True, text


def run(quick: bool) -> list[dict]:
    import torch

    from lorakit.devices import torch_dtype
    from lorakit.generation import generate
    from lorakit.loader_api import LoadOptions
    from lorakit.session_factory import open_session

    tokens, repeats = (16, 5) if quick else (64, 7)
    model_dir = smollm2()
    settings = _fixed_length_settings(tokens)
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-gen-") as tmp:
        lora_a = make_adapter(model_dir, Path(tmp) / "lora-a", seed=1)
        lora_b = make_adapter(model_dir, Path(tmp) / "lora-b", seed=2, r=16, targets=("q_proj", "k_proj", "v_proj", "o_proj"))
        options = LoadOptions()
        configs = {"base": [], "1 LoRA": [str(lora_a)], "2 LoRAs": [f"{lora_a}:{PAIR[0]}", f"{lora_b}:{PAIR[1]}"]}
        sessions = {label: open_session(None, loras, options=options, quiet=True)[0] for label, loras in configs.items()}
        device = sessions["base"].device()
        reference, tokenizer = load_reference(model_dir, device, torch_dtype(options.dtype, device))
        input_ids = chat_ids(tokenizer)
        label = device_label(device)
        tolerance = LOGIT_TOLERANCE["cuda" if device.startswith("cuda") else "cpu"]

        outputs: dict[str, list[int]] = {}

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
            outputs["reference"] = new
            return {"tokens": len(new)}

        with torch.no_grad():
            base_tokens = sessions["base"].generate_ids(input_ids, settings).tolist()
        reference_side()
        ok, checked = _check(sessions, reference, input_ids, (lora_a, lora_b), tolerance, base_tokens, outputs["reference"])
        if not ok:
            return [record(NAME, f"tokens_per_s_{key}", None, None, check_ok=False, checked=checked, device=label) for key in ("base", "1lora", "2lora")]

        warm = _fixed_length_settings(4)
        for session in sessions.values():  # first calls allocate caches; a few tokens are enough to warm up
            generate(session, input_ids, warm)
        sides = {"reference": reference_side, **{name: lorakit_side(name) for name in sessions}}
        samples = interleave(sides, repeats=repeats, warmup=0, rotate=True)
        speed = {name: [s["tokens"] / s["seconds"] for s in runs] for name, runs in samples.items()}
        counts = {s["tokens"] for runs in samples.values() for s in runs}
        if counts != {tokens}:
            return [failed(NAME, f"sides generated {sorted(counts)} tokens, expected exactly {tokens}", device=label)]
        common = dict(device=label, unit="tok/s", checked=checked)
        return [
            record(NAME, "tokens_per_s_base", speed["base"], speed["reference"], note="lorakit, no LoRA, vs plain transformers", **common),
            record(NAME, "tokens_per_s_1lora", speed["1 LoRA"], speed["reference"], target=">= 0.97", note="lorakit + LoRA A vs plain base", **common),
            record(NAME, "tokens_per_s_2lora", speed["2 LoRAs"], speed["reference"], note=f"lorakit + A:{PAIR[0]} + B:{PAIR[1]} vs plain base", **common),
        ]
