"""What ExLlamaV2 refuses in a PEFT adapter, checked on the CPU before anything loads.

Mirrors ``exllamav2/lora.py`` (ExLlamaV2Lora): it raises on ``fan_in_fan_out``, cannot apply a LoRA
bias, and attaches A/B pairs only to the decoder's linear layers ``model.layers.N.{self_attn,mlp}.*``
(plus whole replacement ``lm_head``/``embed_tokens`` weights). Anything else (DoRA magnitudes,
embedding LoRAs, other modules) fails inside the engine with a bare ``ValueError``; here it fails
first, in one line, naming the adapter and the layer.
"""

from __future__ import annotations

import re

from lorakit.api import CapabilityError

KNOWN_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_DECODER_LINEAR = re.compile(r"(?:^|\.)model\.layers\.\d+\.(?:self_attn|mlp)\.(" + "|".join(KNOWN_LAYERS) + r")$")
_WHOLE_WEIGHTS = ("lm_head", "embed_tokens")


def check_exllama_adapter(adapter) -> None:
    """Raise :class:`CapabilityError` for an adapter ExLlamaV2 cannot attach (an ``AdapterInfo``)."""
    label = f"ExLlamaV2 cannot attach adapter '{adapter.path.name}'"
    config = adapter.config
    if config.get("fan_in_fan_out"):
        raise CapabilityError(f"{label}: it sets fan_in_fan_out (GPT-2 style Conv1D layout)", "use a loader such as transformers")
    bias = str(config.get("bias", "none") or "none")
    if bias != "none":
        raise CapabilityError(f"{label}: it trains biases (bias='{bias}'), which ExLlamaV2 cannot apply", "retrain with bias='none' or use --loader transformers")
    if config.get("use_dora"):
        raise CapabilityError(f"{label}: it is a DoRA adapter (magnitude vectors)", "use --loader transformers")
    for module, parts in sorted(adapter.module_parts().items()):
        leaf = module.rsplit(".", 1)[-1]
        if leaf in _WHOLE_WEIGHTS and set(parts) <= {"weight"}:
            continue
        if not _DECODER_LINEAR.search(module):
            raise CapabilityError(
                f"{label}: ExLlamaV2 does not know layer '{module}'",
                "it takes LoRAs on " + ", ".join(KNOWN_LAYERS) + " inside the decoder layers",
            )
        unknown = sorted(set(parts) - {"lora_A", "lora_B"})
        if unknown:
            raise CapabilityError(f"{label}: '{module}' has {unknown[0]} tensors, ExLlamaV2 takes only lora_A/lora_B", "use --loader transformers")
