"""Using LoRAs on a loaded base: from command-line arguments to generated text.

- :mod:`~lorakit.inference.planning`: resolve MODEL and ``--lora``s, choose the loader, pre-flight
  every adapter, then load and attach (what was read is carried into the session, not re-read).
- :mod:`~lorakit.inference.prompts`: the prompt templates (raw, alpaca, chat, every shipped format
  and the format an adapter was trained with); :mod:`~lorakit.inference.format_prompts` cuts a
  format file's template into a prompt.
- :mod:`~lorakit.inference.generation`: sampling settings and streamed generation.
- :mod:`~lorakit.inference.runner`: ``lorakit generate`` (single prompt, ``--compare``, JSONL in/out).
- :mod:`~lorakit.inference.probe`: does each LoRA change the output (KL, top-token changes).
- :mod:`~lorakit.inference.interactive`: the ``apply -i`` session.
"""
