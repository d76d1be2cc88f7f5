"""The built-in Transformers loader: fp32/bf16/fp16, bitsandbytes 8-bit/4-bit, LoRAs through PEFT.

Several LoRAs can be active at once; a LoRA's weight w scales its update, so the model computes
W + sum_i w_i * (alpha_i / r_i) * B_i A_i (PEFT's ``set_scale``), the same as PEFT's
``add_weighted_adapter(..., combination_type="cat")``. Removal deletes the adapter's layers without
touching the base weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import lorakit
from lorakit.capabilities import Capabilities
from lorakit.loader_api import AttachedLora, Loader, LoadOptions, Session

NAME = "transformers"


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
        notes="bitsandbytes 8-bit/4-bit needs the bitsandbytes package",
    )
    requires = ("torch", "transformers", "peft")

    def check_options(self, options: LoadOptions) -> None:
        super().check_options(options)
        if options.quantization():
            import importlib.util

            from lorakit.errors import CapabilityError

            if importlib.util.find_spec("bitsandbytes") is None:
                raise CapabilityError("--load-in-8bit/--load-in-4bit need bitsandbytes", "pip install bitsandbytes")

    def load(self, model_path: Path, options: LoadOptions) -> "TransformersSession":
        session = TransformersSession(self, model_path, options)
        session._reload_base()
        return session


def _internal_name(index: int, name: str) -> str:
    # PEFT module dicts refuse dots, and refuses names that are substrings of "lora_" (e.g. "a").
    return f"lk{index}_" + re.sub(r"[^0-9A-Za-z_]", "_", name)[:40]


def load_base_model(model_path: Path, options: LoadOptions):
    """Load tokenizer and model as the options say; shared with training and evaluation."""
    from lorakit.quiet import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.devices import pick_device, torch_dtype

    device = pick_device(options.cpu)
    dtype = torch_dtype(options.dtype, device)
    kwargs = {"dtype": dtype, "trust_remote_code": options.trust_remote_code}
    quant = options.quantization()
    if quant:
        from transformers import BitsAndBytesConfig

        if quant == "8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            compute = torch.bfloat16 if dtype == torch.float32 and device == "cpu" else dtype
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
        # Under torchrun each rank has already selected its own GPU (training/distributed.py).
        kwargs["device_map"] = {"": device if device != "cuda" else torch.cuda.current_device()}
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=options.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if not quant:
        model.to(device)
    if quant == "4bit":
        disable_cpu_4bit_repack(model)
    model.eval()
    return model, tokenizer, device


def disable_cpu_4bit_repack(model) -> int:
    """Work around the bitsandbytes CPU 4-bit bug measured in GUIDE.md.

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


class TransformersSession(Session):
    def __init__(self, loader, model_path, options):
        super().__init__(loader, model_path, options)
        self.base = None
        self.peft = None
        self._device = "cpu"
        self._internal: dict[str, str] = {}
        self._counter = 0
        self.merged = None

    def _merged(self):
        from lorakit.merged_loras import MergedLoras

        if self.merged is None or self.merged.model is not self.base:
            self.merged = MergedLoras(self.base)
        return self.merged

    def _use_merged(self, adapter) -> bool:
        """Fold plain LoRAs into the weights for inference (see lorakit.merged_loras); PEFT otherwise."""
        if self.peft is not None or self.options.purpose not in ("inference", "merge-verify") or self.options.quantization():
            return False
        if os.environ.get("LORAKIT_PEFT_INFERENCE"):
            return False
        return self._merged().can_take(adapter)

    def _is_merged(self, name: str) -> bool:
        return self.merged is not None and name in self.merged.adapters

    def _reload_base(self) -> None:
        from lorakit.cli import plugin_manager

        self.base = self.peft = None
        self._internal.clear()
        self.base, self.tokenizer, self._device = load_base_model(self.model_path, self.options)
        plugin_manager().hook.prepare_model(
            model=self.base, loader_name=self.loader.name, config={"model_path": self.model_path, "options": self.options, "purpose": self.options.purpose}
        )
        self.model = self.base

    def device(self) -> str:
        return self._device

    def _lora_layers(self):
        from peft.tuners.lora import LoraLayer

        return [module for module in self.peft.modules() if isinstance(module, LoraLayer)]

    def _attach(self, lora: AttachedLora) -> None:
        from lorakit.adapters import read_adapter

        adapter = read_adapter(lora.path, allow_pickle=self.options.allow_pickle)
        if self._use_merged(adapter):
            self._merged().add(lora.name, lora.path, adapter, lora.weight)
            return
        if self.merged is not None and self.merged.adapters:
            # A LoRA only PEFT can run arrives: move the merged ones onto PEFT's path as well.
            moved = [item for item in self.loras if self._is_merged(item.name)]
            self.merged.apply([])
            self.merged.sync()  # PEFT wraps the base weights, so they must be the base again first
            self.merged = None
            for item in moved:
                self._attach_peft(item)
        self._attach_peft(lora)

    def _attach_peft(self, lora: AttachedLora) -> None:
        from peft import PeftModel

        self._counter += 1
        internal = _internal_name(self._counter, lora.name)
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.base, str(lora.path), adapter_name=internal, is_trainable=False)
        else:
            self.peft.load_adapter(str(lora.path), adapter_name=internal, is_trainable=False)
        self._internal[lora.name] = internal
        self.model = self.peft
        if lora.weight != 1.0:
            self._set_weight(lora, lora.weight)

    def _detach(self, lora: AttachedLora) -> None:
        if self._is_merged(lora.name):
            self.merged.remove(lora.name)  # the base class re-applies the remaining set
            return
        internal = self._internal.pop(lora.name)
        if not self._internal:
            self.base = self.peft.unload()  # drops the LoRA layers, base weights untouched
            self.peft = None
            self.model = self.base
            return
        self.peft.base_model.set_adapter(list(self._internal.values()), inference_mode=True)
        self.peft.delete_adapter(internal)

    def _set_weight(self, lora: AttachedLora, weight: float) -> None:
        if self._is_merged(lora.name):
            self.merged.set_weight(lora.name, weight)
            return
        internal = self._internal[lora.name]
        for layer in self._lora_layers():
            layer.set_scale(internal, weight)

    def _activate(self, names: list[str]) -> None:
        if self.merged is not None:
            self.merged.apply([name for name in names if self._is_merged(name)])
        if self.peft is None:
            return
        if not names:
            self.peft.base_model.disable_adapter_layers()
            return
        self.peft.base_model.enable_adapter_layers()
        self.peft.base_model.set_adapter([self._internal[name] for name in names], inference_mode=True)

    def forward_logits(self, input_ids, attention_mask=None):
        import torch

        with torch.no_grad():
            return self.model(input_ids=input_ids.to(self._device), attention_mask=None if attention_mask is None else attention_mask.to(self._device)).logits

    def generate_ids(self, input_ids, settings, streamer=None):
        import torch

        input_ids = input_ids.to(self._device)
        kwargs = settings.generate_kwargs()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            output = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pad_token_id=pad, streamer=streamer, **kwargs
            )
        return output[0, input_ids.shape[1]:]


@lorakit.hookimpl
def register_loaders(register):
    register(TransformersLoader())


@lorakit.hookimpl(trylast=True)
def resolve_loader(model_path, options):
    return NAME
