"""A session whose base is a transformers model and whose LoRAs go through PEFT, subclassable.

Several LoRAs can be active at once; a LoRA's weight w scales its update, so the model computes
W + sum_i w_i * (alpha_i / r_i) * B_i A_i (PEFT's ``set_scale``), the same as PEFT's
``add_weighted_adapter(..., combination_type="cat")``. Removal deletes the adapter's layers without
touching the base weights. For inference, plain LoRAs on ordinary linear layers are folded into the
weights instead (:mod:`lorakit.loaders.folding`), so generation runs at the base's speed.

A backend whose model is a ``transformers`` causal LM (any quantized layers that look like
``nn.Linear`` to PEFT included) subclasses :class:`PeftSession` and overrides only
:meth:`PeftSession.load_base`; the default loads a plain Hugging Face folder with
:func:`lorakit.loaders.pretrained.load_pretrained`.
"""

from __future__ import annotations

import os
import re

from lorakit.loaders.session import AttachedLora, Session
from lorakit.store.adapters import read_adapter


def _internal_name(index: int, name: str) -> str:
    # PEFT module dicts refuse dots, and refuses names that are substrings of "lora_" (e.g. "a").
    return f"lk{index}_" + re.sub(r"[^0-9A-Za-z_]", "_", name)[:40]


class PeftSession(Session):
    def __init__(self, loader, model_path, options):
        super().__init__(loader, model_path, options)
        self.base = None
        self.peft = None
        self._internal: dict[str, str] = {}
        self._counter = 0
        self.merged = None

    def load_base(self):
        from lorakit.loaders.pretrained import load_pretrained

        return load_pretrained(self.model_path, self.options)

    def release_base(self) -> None:
        self.base = self.peft = self.merged = None
        self._internal.clear()
        super().release_base()

    def reload_base(self) -> None:
        super().reload_base()
        self.base = self.model

    def _merged(self):
        from lorakit.loaders.folding import MergedLoras

        if self.merged is None or self.merged.model is not self.base:
            self.merged = MergedLoras(self.base)
        return self.merged

    def _use_merged(self, adapter) -> bool:
        """Fold plain LoRAs into the weights for inference (see lorakit.loaders.folding); PEFT otherwise."""
        if self.peft is not None or self.options.purpose not in ("inference", "merge-verify") or self.options.quantization():
            return False
        if os.environ.get("LORAKIT_PEFT_INFERENCE"):
            return False
        return self._merged().can_take(adapter)

    def _is_merged(self, name: str) -> bool:
        return self.merged is not None and name in self.merged.adapters

    def _lora_layers(self):
        from peft.tuners.lora import LoraLayer

        return [module for module in self.peft.modules() if isinstance(module, LoraLayer)]

    def _attach(self, lora: AttachedLora) -> None:
        adapter = lora.adapter or read_adapter(lora.path, allow_pickle=self.options.allow_pickle)
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
