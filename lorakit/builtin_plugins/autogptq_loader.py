"""The built-in ``autogptq`` loader: GPTQ checkpoints on the GPTQModel engine, one LoRA through PEFT.

AutoGPTQ itself is unmaintained and imports only on transformers 4.x; GPTQModel is its maintained
successor and is the engine here. The loader keeps AutoGPTQ's contract as users know it from
text-generation-webui: one LoRA at a time, and removing it means reloading the base (lorakit does
the reload itself and reports what it cost). Merging is refused: rounding a LoRA into 4-bit
weights loses most of it.

On the CPU the engine's ``torch`` kernel is used, eagerly: its default (ATen) and fused CPU
kernels return outputs without gradients after any no-grad forward (measured with GPTQModel 7.6), which silently
stops LoRA training; and ``torch.compile`` of the dequantizer costs ~20 s on the first forward here.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import lorakit
from lorakit.api import (
    Availability,
    Capabilities,
    CapabilityError,
    Loader,
    LoadOptions,
    PeftSession,
    is_gptq_checkpoint,
    refuse_bitsandbytes,
)

NAME = "autogptq"
ENGINE = "gptqmodel"
ENGINE_PIN = "gptqmodel==7.6.0"


class GPTQModelSession(PeftSession):
    """The PEFT session on a base built by GPTQModel."""

    def load_base(self):
        from lorakit.builtin_plugins.gptq_engine import load_with_gptqmodel

        return load_with_gptqmodel(self.model_path, self.options)


class AutoGPTQLoader(Loader):
    name = NAME
    description = "GPTQ checkpoints on GPTQModel (AutoGPTQ's maintained successor); one LoRA through PEFT"
    capabilities = Capabilities(
        max_loras=1,
        per_lora_weights=True,
        removal="reload",
        merge=False,
        train=True,
        precisions=("bf16", "fp16"),
        quantizations=("gptq",),
        devices=("cpu", "cuda"),
        notes=(
            "removing the LoRA reloads the base; merging into the 4-bit GPTQ weights is refused (it would lose "
            "most of the LoRA): `lorakit merge --dequantize` merges into a 16-bit copy; trains with the engine's torch kernel"
        ),
    )
    requires = ("torch", "transformers", "peft", ENGINE, "optimum")
    session_class = GPTQModelSession

    def availability(self) -> Availability:
        available = super().availability()
        if available.ok or ENGINE not in available.missing:
            if not available.ok:
                available.reason += f" (pip install {' '.join(available.missing)})"
            return available
        if importlib.util.find_spec("auto_gptq") is not None:
            transformers = _version("transformers")
            available.reason = (
                f"auto-gptq is installed but imports only with transformers 4.x (this is {transformers}); "
                f"install its maintained successor: pip install {ENGINE_PIN} optimum"
            )
        else:
            available.reason += f" (pip install {ENGINE_PIN} optimum)"
        return available

    def check_options(self, options: LoadOptions) -> None:
        refuse_bitsandbytes(self.name, options)
        if options.dtype == "fp32":
            raise CapabilityError(
                "GPTQModel's kernels compute in bf16 or fp16, not fp32",
                ("use --precision bf16" if options.purpose == "train" else "use --dtype bf16 (the default on CPU)")
                + ", or --loader gptq_monkeypatch for fp32",
            )
        super().check_options(options)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@lorakit.hookimpl
def register_loaders(register):
    register(AutoGPTQLoader())


@lorakit.hookimpl
def resolve_loader(model_path, options):
    # Only when the engine can run: otherwise another plugin (gptq_monkeypatch) may take the model.
    if is_gptq_checkpoint(Path(model_path)) and AutoGPTQLoader().availability().ok:
        return NAME
    return None

