"""The ``gptq_monkeypatch`` loader: GPTQ checkpoints on pure-PyTorch layers, LoRAs through PEFT.

Because :class:`GPTQLinear` looks like an ``nn.Linear`` to PEFT, the session is the built-in
Transformers session with a different way of building the base: several LoRAs at once, per-LoRA
weights, removal without reloading, and training all work as they do on a 16/32-bit model.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.capabilities import Capabilities
from lorakit.loader_api import Loader, LoadOptions
from lorakit.plugins.gptq_checkpoint import refuse_bitsandbytes
from lorakit.plugins.transformers_loader import TransformersSession

NAME = "gptq_monkeypatch"


class GPTQMonkeypatchLoader(Loader):
    name = NAME
    description = "GPTQ checkpoints on pure-PyTorch dequantizing layers (no engine), LoRAs through PEFT"
    capabilities = Capabilities(
        max_loras=None,
        per_lora_weights=True,
        removal="fast",
        merge=False,
        train=True,
        precisions=("fp32", "bf16", "fp16"),
        quantizations=("gptq",),
        devices=("cpu", "cuda"),
        notes=(
            "2/4/8-bit GPTQ with act-order; merging into the quantized weights is refused (rounding to 4 bits "
            "would lose most of the LoRA): `lorakit merge --dequantize` merges into a 16-bit copy"
        ),
    )
    requires = ("torch", "transformers", "peft", "accelerate")

    def check_options(self, options: LoadOptions) -> None:
        refuse_bitsandbytes(self.name, options)
        super().check_options(options)

    def load(self, model_path: Path, options: LoadOptions) -> MonkeypatchSession:
        session = MonkeypatchSession(self, model_path, options)
        session._reload_base()
        return session


def load_patched_model(model_path: Path, options: LoadOptions):
    """Tokenizer and GPTQ model on the chosen device; the counterpart of ``load_base_model``."""
    from lorakit.quiet import quiet_libraries

    quiet_libraries()
    from transformers import AutoTokenizer

    from lorakit.devices import pick_device, torch_dtype
    from lorakit_gptq_monkeypatch.patching import load_quantized_model

    device = pick_device(options.cpu)
    dtype = torch_dtype(options.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=options.trust_remote_code)
    model, _settings = load_quantized_model(model_path, dtype, device, options.trust_remote_code)
    return model, tokenizer, device


class MonkeypatchSession(TransformersSession):
    def _reload_base(self) -> None:
        from lorakit.cli import plugin_manager

        self.base = self.peft = None
        self._internal.clear()
        self.base, self.tokenizer, self._device = load_patched_model(self.model_path, self.options)
        plugin_manager().hook.prepare_model(
            model=self.base, loader_name=self.loader.name,
            config={"model_path": self.model_path, "options": self.options, "purpose": self.options.purpose},
        )
        self.model = self.base
