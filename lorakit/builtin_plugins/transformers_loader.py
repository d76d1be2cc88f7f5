"""The built-in ``transformers`` loader: fp32/bf16/fp16, bitsandbytes 8-bit/4-bit, LoRAs through PEFT.

Written against the public API only (:mod:`lorakit.api`), like any third-party backend: the session
is :class:`~lorakit.api.PeftSession` with a base loader that adds bitsandbytes quantization and the
CPU 4-bit workaround below.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lorakit
from lorakit.api import (
    Capabilities,
    CapabilityError,
    Loader,
    LoadOptions,
    PeftSession,
    load_pretrained,
    pick_device,
    torch_dtype,
)

NAME = "transformers"


class TransformersSession(PeftSession):
    def load_base(self):
        return load_base_model(self.model_path, self.options)


class TransformersLoader(Loader):
    name = NAME
    description = "Hugging Face Transformers + PEFT (16/32-bit, bitsandbytes 8-bit/4-bit)"
    capabilities = Capabilities(
        max_loras=None,
        per_lora_weights=True,
        removal="fast",
        merge=True,
        train=True,
        precisions=("fp32", "bf16", "fp16"),
        quantizations=("8bit", "4bit"),
        devices=("cpu", "cuda", "mps"),
        serve_per_request=True,
        serve_mixed_batch=True,
        notes="bitsandbytes 8-bit/4-bit needs the bitsandbytes package",
    )
    requires = ("torch", "transformers", "peft")
    session_class = TransformersSession

    def check_options(self, options: LoadOptions) -> None:
        super().check_options(options)
        if options.quantization() and importlib.util.find_spec("bitsandbytes") is None:
            raise CapabilityError("--load-in-8bit/--load-in-4bit need bitsandbytes", "pip install bitsandbytes")


def load_base_model(model_path: Path, options: LoadOptions):
    """Tokenizer, model and device as the options say, bitsandbytes quantization included."""
    quant = options.quantization()
    if not quant:
        return load_pretrained(model_path, options)
    import torch
    from transformers import BitsAndBytesConfig

    device = pick_device(options.cpu)
    dtype = torch_dtype(options.dtype, device)
    if quant == "8bit":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        compute = torch.bfloat16 if dtype == torch.float32 and device == "cpu" else dtype
        storage = options.extra.get("bnb_4bit_quant_storage")  # set for a sharded base (training/sharding.py)
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                    bnb_4bit_quant_storage=torch_dtype(storage, device) if storage else torch.uint8)
    # Under torchrun each rank has already selected its own GPU (training/distributed.py).
    device_map = {"": device if device != "cuda" else torch.cuda.current_device()}
    model, tokenizer, device = load_pretrained(model_path, options, quantization_config=config, device_map=device_map)
    if quant == "4bit":
        disable_cpu_4bit_repack(model)
    return model, tokenizer, device


def disable_cpu_4bit_repack(model) -> int:
    """Work around a bitsandbytes CPU 4-bit bug (measured with bitsandbytes 0.50 on torch 2.13).

    After any no-grad forward, bitsandbytes repacks 4-bit weights for an avx512-bf16 kernel and from
    then on no LoRA parameter upstream gets a gradient (loss stays flat). Turning that path off
    keeps training correct at a small speed cost. Returns how many layers were changed.
    """
    changed = 0
    for module in model.modules():
        if type(module).__name__ == "Linear4bit" and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


@lorakit.hookimpl
def register_loaders(register):
    register(TransformersLoader())


@lorakit.hookimpl(trylast=True)
def resolve_loader(model_path, options):
    return NAME
