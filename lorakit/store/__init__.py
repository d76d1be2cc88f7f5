"""What lorakit keeps on disk and reads without loading weights.

- :mod:`~lorakit.store.home`: ``$LORAKIT_HOME`` and its ``models/``, ``loras/``, ``cache/`` folders.
- :mod:`~lorakit.store.models`: a ``MODEL`` argument -> a Hugging Face folder (the embedded default,
  a folder under ``models/``, any HF folder, a ``.gguf`` file; hub ids on top of it are
  :mod:`lorakit.hub.resolve`'s); :mod:`~lorakit.store.gguf_convert`
  converts a GGUF once into a normal folder.
- :mod:`~lorakit.store.lora_spec`: ``--lora NAME[:WEIGHT]`` parsed and its folder found.
- :mod:`~lorakit.store.adapters`: a PEFT adapter folder read from its headers (config, shapes,
  recorded base signature and prompt format).
- :mod:`~lorakit.store.safetensors_header`: tensor names and shapes without reading tensors.
- :mod:`~lorakit.store.preflight`: does an adapter fit a base (sizes, names, layers), from configs
  and the meta device.
- :mod:`~lorakit.store.gptq_checkpoint`: is a folder a GPTQ checkpoint, and its settings.
- :mod:`~lorakit.store.rows`: the one reader of JSON / JSON Lines rows.
- :mod:`~lorakit.store.legacy`: 2023 adapters (pickle weights, old config keys) rewritten in today's
  format (``lorakit convert``).
- :mod:`~lorakit.store.atomic`: writes under a temporary name, then a rename; folder locks.

Nothing here imports torch at import time.
"""
