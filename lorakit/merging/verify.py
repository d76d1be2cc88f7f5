"""Check a merge: logits of the merged model vs the base with the same LoRAs attached, unmerged.

The reference is lorakit's own Transformers session, each LoRA scaled by its weight, so "merged" is
compared with exactly what ``lorakit generate`` would compute: plain LoRAs folded in memory by
``lorakit.loaders.folding`` (code apart from the streaming merge's, and no PEFT import: that import alone
took about 7 s of an 11 s verification), DoRA and the other special cases through PEFT. The tests
compare both paths with PEFT itself. Both sides run in fp32; the two models are loaded one after the
other, never together.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from lorakit.errors import LorakitError

# The largest logit difference expected from rounding alone, by output dtype.
TOLERANCE = {"F32": 1e-3, "F64": 1e-3, "BF16": 0.5, "F16": 0.1}


@dataclass
class Verification:
    max_abs_logit_diff: float
    argmax_agreement: float
    positions: int
    prompts: int
    tolerance: float
    reference: str

    @property
    def within_tolerance(self) -> bool:
        return self.max_abs_logit_diff <= self.tolerance

    def to_dict(self) -> dict:
        return {**asdict(self), "within_tolerance": self.within_tolerance}

    def describe(self) -> str:
        return (
            f"max |logit difference| {self.max_abs_logit_diff:.3g} over {self.positions} positions of {self.prompts} probe prompts, "
            f"top token agrees at {self.argmax_agreement:.1%} (reference: {self.reference})"
        )


def import_libraries_off_stack() -> None:
    """Import PEFT (and GPTQModel, which PEFT imports lazily) in a short-lived thread.

    GPTQModel 7.6 keeps the ImportError of an optional backend (llama_cpp) with its traceback, and a
    traceback keeps every frame above it alive with its locals. Imported lazily inside a session, that
    pinned the whole reference model (about 0.5 GB for SmolLM2) until the process ended. A thread's
    stack holds nothing of ours.
    """
    import importlib.util
    import threading

    wanted = [name for name in ("peft", "gptqmodel") if name not in sys.modules and importlib.util.find_spec(name) is not None]
    if not wanted:
        return

    def load() -> None:
        for name in wanted:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a broken optional package must not stop verification here
                pass

    thread = threading.Thread(target=load, name="lorakit-imports")
    thread.start()
    thread.join()


def _foldable(path: Path, allow_pickle: bool) -> bool:
    """Whether the session will fold this LoRA in memory (and so never import PEFT for it)."""
    from lorakit.loaders.folding import adapter_is_mergeable
    from lorakit.store.adapters import read_adapter

    return adapter_is_mergeable(read_adapter(path, allow_pickle=allow_pickle))


def _probe_ids(tokenizer) -> list:
    from lorakit.inference.probe import PROBE_PROMPTS

    return [tokenizer(text, return_tensors="pt")["input_ids"] for text in PROBE_PROMPTS]


def _logits(model, encoded, device) -> list:
    import torch

    with torch.no_grad():
        return [model(input_ids=ids.to(device)).logits.float().cpu() for ids in encoded]


def reference_logits(model_path: Path, loras: list[tuple[Path, float]], device: str, trust_remote_code: bool = False, allow_pickle: bool = False):
    """Logits of base + LoRAs attached at runtime through the loader that would run this base; also the probe ids.

    That loader must be one that can merge (its capability record says so): it holds the base's own
    weights, so its logits are what the merged model must reproduce.
    """
    from lorakit.errors import CapabilityError
    from lorakit.inference.planning import open_session
    from lorakit.loaders.hints import backends_that
    from lorakit.loaders.options import LoadOptions
    from lorakit.loaders.registry import choose_loader

    options = LoadOptions(dtype="fp32", cpu=device == "cpu", trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, purpose="merge-verify")
    loader = choose_loader(model_path, options)
    if not loader.capabilities.merge:
        raise CapabilityError(f"loader '{loader.name}' cannot hold a base to verify a merge against", backends_that(lambda c: c.merge, "merge"))
    texts = [f"{path}:{weight!r}" for path, weight in loras]
    session, _ = open_session(str(model_path), texts, loader_name=loader.name, options=options, quiet=True)
    try:
        encoded = _probe_ids(session.tokenizer)
        logits = [session.forward_logits(ids).float().cpu() for ids in encoded]
        large = _is_large(session.model)
    finally:
        session.close()
        del session
    if large:
        gc.collect()  # free the reference before the merged model loads (about 1 s, worth it only for big models)
    return logits, encoded


def peft_reference_logits(base, tokenizer_path: Path, loras: list[tuple[Path, float]], device: str):
    """The same reference for a base built in memory (a dequantized one): PEFT adapters, each scaled by its weight."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoTokenizer

    names = [f"lk{index}" for index in range(len(loras))]
    model = PeftModel.from_pretrained(base.to(device), str(loras[0][0]), adapter_name=names[0], is_trainable=False)
    for name, (path, _) in zip(names[1:], loras[1:]):
        model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    model.base_model.set_adapter(names, inference_mode=True)
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            for name, (_, weight) in zip(names, loras):
                layer.set_scale(name, weight)
    encoded = _probe_ids(AutoTokenizer.from_pretrained(tokenizer_path))
    logits = _logits(model.eval(), encoded, device)
    large = _is_large(model)
    del model, base
    if large:
        gc.collect()
    return logits, encoded


def _is_large(model) -> bool:
    return model is not None and sum(parameter.numel() for parameter in model.parameters()) > 20_000_000


def compare(reference: list, merged: list, tolerance: float, label: str) -> Verification:
    import torch

    worst, agree, positions = 0.0, 0, 0
    for ref, got in zip(reference, merged):
        if not bool(torch.isfinite(got).all()):
            raise LorakitError("the merged model produces NaN or Inf logits; nothing was written", "check the adapters and merge weights")
        worst = max(worst, float((ref - got).abs().max()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        positions += ref.shape[0] * ref.shape[1]
    return Verification(worst, agree / max(positions, 1), positions, len(reference), tolerance, label)


def verify(
    model_path: Path, loras: list[tuple[Path, float]], load_merged: Callable[[], object], out_dtype: str, device: str,
    trust_remote_code: bool = False, allow_pickle: bool = False, reference_label: str = "base + LoRAs attached at runtime",
    load_base: Callable[[], object] | None = None,
) -> Verification:
    """``load_merged()`` returns the merged model (fp32); it is called after the reference is freed.

    ``load_base()``, when given, builds the reference's base in memory (a dequantized base) instead of
    loading ``model_path`` through the session.
    """
    if load_base is not None or not all(_foldable(path, allow_pickle) for path, _ in loras):
        import_libraries_off_stack()
    if load_base is None:
        reference, encoded = reference_logits(model_path, loras, device, trust_remote_code, allow_pickle)
    else:
        reference, encoded = peft_reference_logits(load_base(), model_path, loras, device)
    model = load_merged()
    try:
        model.to(device).eval()
        merged = _logits(model, encoded, device)
        large = _is_large(model)
    finally:
        del model
    if large:
        gc.collect()
    return compare(reference, merged, TOLERANCE.get(out_dtype, 0.5), reference_label)


def model_from_source(model_path: Path, source, trust_remote_code: bool = False) -> Callable[[], object]:
    """A loader for an fp32 HF model whose weights come from a tensor source (e.g. a dequantized base)."""

    def load():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code)
        result = model.load_state_dict({name: source.read(name).float() for name in source.names()}, strict=False)
        tied = getattr(config.get_text_config(), "tie_word_embeddings", False)
        missing = [key for key in result.missing_keys if not (tied and key.endswith("lm_head.weight"))]
        if missing or result.unexpected_keys:
            raise LorakitError(f"the dequantized base does not fit its model: missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}")
        return model

    return load


def load_hf_folder(folder: Path, trust_remote_code: bool = False) -> Callable[[], object]:
    def load():
        import torch
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=trust_remote_code)

    return load
