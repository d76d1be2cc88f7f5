"""The ``gptq_monkeypatch`` loader: GPTQ checkpoints on pure-PyTorch layers, LoRAs through PEFT.

Because :class:`GPTQLinear` looks like an ``nn.Linear`` to PEFT, the session is lorakit's public
:class:`~lorakit.api.PeftSession` with a different way of building the base: several LoRAs at once,
per-LoRA weights, removal without reloading, and training all work as they do on a 16/32-bit model.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.api import (
    Capabilities,
    Loader,
    LoadOptions,
    PeftSession,
    pick_device,
    quiet_libraries,
    refuse_bitsandbytes,
    torch_dtype,
)

NAME = "gptq_monkeypatch"


class MonkeypatchSession(PeftSession):
    def load_base(self):
        return load_patched_model(self.model_path, self.options)


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
    session_class = MonkeypatchSession

    def check_options(self, options: LoadOptions) -> None:
        refuse_bitsandbytes(self.name, options)
        super().check_options(options)


def load_patched_model(model_path: Path, options: LoadOptions):
    """Tokenizer, GPTQ model and device: what :meth:`lorakit.api.Session.load_base` returns."""
    quiet_libraries()
    from transformers import AutoTokenizer

    from lorakit_gptq_monkeypatch.patching import load_quantized_model

    device = pick_device(options.cpu)
    dtype = torch_dtype(options.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=options.trust_remote_code)
    model, _settings = load_quantized_model(model_path, dtype, device, options.trust_remote_code)
    return model, tokenizer, device
