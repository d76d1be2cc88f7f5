"""Load a Hugging Face causal LM and its tokenizer as :class:`LoadOptions` say, quietly.

The one place that turns ``--dtype``/``--cpu``/``--trust-remote-code`` into ``from_pretrained``
arguments; backends add their own (a quantization config, a device map) through ``**extra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.loaders.options import LoadOptions


def load_pretrained(model_path: Path, options: LoadOptions, **extra: Any):
    """``(model, tokenizer, device)``: the model in eval mode on the picked device.

    With ``device_map`` in ``extra`` the model is left where transformers placed it.
    """
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.loaders.devices import pick_device, torch_dtype

    device = pick_device(options.cpu)
    kwargs = {"dtype": torch_dtype(options.dtype, device), "trust_remote_code": options.trust_remote_code, **extra}
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=options.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if "device_map" not in extra:
        model.to(device)
    model.eval()
    return model, tokenizer, device
