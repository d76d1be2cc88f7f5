"""The ``exllama`` loader: EXL2/GPTQ models on ExLlamaV2 (CUDA only), LoRA through ExLlamaV2Lora.

exllamav2 compiles CUDA extensions when it is imported, so nothing here imports it (or torch)
until a model is loaded; ``availability()`` says why the backend cannot run on this machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lorakit.api import Availability, Capabilities, CapabilityError, Loader, LoadOptions

NAME = "exllama"
ENGINE = "exllamav2"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class ExLlamaLoader(Loader):
    name = NAME
    description = "EXL2/GPTQ models on ExLlamaV2 (CUDA GPUs), LoRA through ExLlamaV2Lora"
    capabilities = Capabilities(
        max_loras=1,
        per_lora_weights=True,
        removal="fast",
        merge=False,
        train=False,
        precisions=("fp16",),
        quantizations=("exl2", "gptq"),
        devices=("cuda",),
        notes=(
            "needs a CUDA GPU; adapters with fan_in_fan_out, biases, DoRA or layers outside the decoder's "
            "linear layers are refused before loading; a weight is applied as ExLlamaV2's lora_scaling"
        ),
    )
    requires = ("torch", ENGINE)

    def availability(self) -> Availability:
        missing = [module for module in self.requires if not _installed(module)]
        if missing:
            return Availability(False, f"needs a CUDA GPU and the {ENGINE} package (missing: {', '.join(missing)})", missing)
        if not _cuda_visible():
            return Availability(False, f"needs a CUDA GPU and torch sees none ({ENGINE} compiles CUDA kernels when imported)")
        return Availability(True)

    def check_options(self, options: LoadOptions) -> None:
        if options.cpu:
            raise CapabilityError("loader 'exllama' runs on CUDA GPUs only; --cpu cannot apply", "drop --cpu, or use --loader autogptq or gptq_monkeypatch on a CPU")
        if options.quantization():
            raise CapabilityError(f"loader 'exllama' loads EXL2/GPTQ checkpoints, which are already quantized; --load-in-{options.quantization()} does not apply")
        super().check_options(options)

    def check_adapter(self, adapter) -> None:
        from lorakit_exllama.preflight import check_exllama_adapter

        check_exllama_adapter(adapter)

    def load(self, model_path: Path, options: LoadOptions):
        from lorakit_exllama.session import ExLlamaSession

        return ExLlamaSession.open(self, model_path, options)


def is_exl2_checkpoint(model_path: Path) -> bool:
    """EXL2 folders carry ``quantization_config.quant_method == "exl2"`` in config.json."""
    import json

    config_path = Path(model_path) / "config.json"
    try:
        quant = json.loads(config_path.read_text()).get("quantization_config") or {}
    except (OSError, ValueError):
        return False
    return isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "exl2"
