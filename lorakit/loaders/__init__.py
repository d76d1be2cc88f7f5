"""The loader layer: what a backend is, how one is chosen, and what every backend shares.

- :mod:`~lorakit.loaders.options`: :class:`LoadOptions`, what the user asked a loader for.
- :mod:`~lorakit.loaders.capabilities`: the LoRA capability record each backend advertises.
- :mod:`~lorakit.loaders.session`: :class:`Loader` and :class:`Session` (capability checks, reloading,
  the ``prepare_model`` hook).
- :mod:`~lorakit.loaders.peft_session`: :class:`PeftSession`, a transformers model with LoRAs through
  PEFT; :mod:`~lorakit.loaders.folding` folds plain inference LoRAs into its weights lazily.
- :mod:`~lorakit.loaders.pretrained`: loading a Hugging Face folder as the options say.
- :mod:`~lorakit.loaders.devices`: device and dtype choice (nothing assumes a CPU).
- :mod:`~lorakit.loaders.registry`: the registered backends, choosing one, capability-based hints.
- :mod:`~lorakit.loaders.table`: the README's loader table, rendered from the registered backends.

Backends themselves live in plugins (``lorakit.builtin_plugins`` and ``plugins/*``): nothing here
names one. Third parties reach all of this through :mod:`lorakit.api`.
"""
