"""The in-process chat engine: replies from a loader session, LoRAs changed between turns.

It runs on the same :class:`~lorakit.loaders.session.Session` ``generate`` uses (on a
``PeftSession`` plain LoRAs are folded into the weights lazily), so a reply is token for token what
``lorakit generate`` gives for the same prompt, LoRAs and sampling settings. Adding, removing and
re-weighting LoRAs go through the session, which enforces the backend's capability record: a
backend that holds one LoRA at a time refuses a second, and one that cannot detach says that it
reloaded the base. ``lorakit chat`` and ``lorakit apply -i`` both talk through this engine; the
``--url`` engine (:mod:`lorakit.chat.remote`) has the same methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lorakit.inference.conversation import ChatFormat, choose_format
from lorakit.inference.generation import GenerationResult, SamplingSettings
from lorakit.output.console import warn


# A reply is what generate returns; the --url engine builds the same record from a server's stream.
Reply = GenerationResult


class LocalChatEngine:
    """Chat replies from a loaded session; ``template`` is auto, chat, alpaca or raw."""

    def __init__(self, session, template: str = "auto", command_prefix: str = "/"):
        self.session = session
        self.template = template
        # hints name the REPL's own commands: "/weight" in chat, "weight" in apply -i
        self.command_prefix = command_prefix
        self._warned: set[str] = set()

    # ---- what the REPL shows ---------------------------------------------------------------------
    def describe(self) -> str:
        caps = self.session.capabilities
        text = f"{self.session.model_path.name} on the '{self.session.loader.name}' loader"
        if caps.max_loras == 1:
            text += "; this backend holds one LoRA at a time"
        elif caps.max_loras is not None:
            text += f"; this backend holds up to {caps.max_loras} LoRAs at a time"
        text += {"reload": "; removing a LoRA reloads the base model", "unsupported": "; it cannot remove a LoRA"}.get(caps.removal, "")
        if not caps.per_lora_weights:
            text += "; LoRA weights are fixed at 1"
        return text

    def loras(self) -> list[tuple[str, float]]:
        return [(lora.name, lora.weight) for lora in self.session.loras]

    def prompt_format(self) -> ChatFormat:
        records = [lora.adapter.prompt_format for lora in self.session.loras if lora.adapter and lora.adapter.prompt_format]
        chosen = choose_format(self.template, self.session.tokenizer, records)
        for record in records:
            trained = record.get("template") or record.get("name") or ""
            if trained and trained != chosen.name and trained not in self._warned:
                self._warned.add(trained)
                warn(f"a LoRA was trained with the '{trained}' prompt format but {chosen.describe()} is used; output may be poor")
        return chosen

    # ---- LoRAs, under the backend's capability record ------------------------------------------
    def add_lora(self, text: str) -> str:
        from lorakit.errors import UsageError
        from lorakit.inference.planning import check_planned_lora, plan_loras

        session = self.session
        (planned,) = plan_loras([text], session.options, taken=session.names())
        same = next((lora for lora in session.loras if Path(lora.path).resolve() == planned.path.resolve()), None)
        if same is not None:  # the rule of --lora X --lora X, in every command
            raise UsageError(f"'{planned.spec.name}' is already attached as {same.name}", f"change its weight with: {self.command_prefix}weight {same.name} W")
        check_planned_lora(session.loader, planned, session.model_path, session.options)
        report = session.add_lora(planned.name, planned.path, planned.spec.weight, adapter=planned.adapter)
        return f"added {planned.name} (weight {planned.spec.weight:g}) in {report.seconds * 1000:.0f} ms"

    def remove_lora(self, name: str) -> str:
        report = self.session.remove_lora(name)
        return f"removed {name} in {report.seconds * 1000:.0f} ms ({report.detail})"

    def set_weight(self, name: str, weight: float) -> str:
        report = self.session.set_weight(name, weight)
        return f"{name} weight {weight:g} ({report.seconds * 1000:.0f} ms)"

    # ---- replies ---------------------------------------------------------------------------------
    def render(self, system: str | None, turns: list[dict]) -> tuple[str, bool]:
        chosen = self.prompt_format()
        if system and not chosen.carries_system() and "system" not in self._warned:
            self._warned.add("system")
            warn(f"{chosen.describe()} has no place for a system message; it is left out of the prompt")
        return chosen.render(self.session.tokenizer, system, turns)

    def reply(self, system: str | None, turns: list[dict], settings: SamplingSettings,
              on_text: Callable[[str], None] | None = None) -> Reply:
        """Generate the assistant's next message after ``turns`` (ending with the user's), streamed to ``on_text``."""
        from lorakit.inference.generation import generate

        input_ids = self._fitting_prompt(system, turns, settings.max_new_tokens)
        result = generate(self.session, input_ids, settings, on_text=on_text)
        return result

    def _fitting_prompt(self, system: str | None, turns: list[dict], max_new_tokens: int):
        """The prompt's ids; when the conversation outgrows the model's context, the oldest exchanges are
        left out of the prompt (not out of the conversation), and the user is told."""
        from lorakit.errors import UsageError
        from lorakit.inference.prompts import encode

        limit = getattr(getattr(self.session.model, "config", None), "max_position_embeddings", None)
        dropped = 0
        while True:
            text, special = self.render(system, turns)
            input_ids = encode(self.session.tokenizer, text, special)
            if not isinstance(limit, int) or input_ids.shape[1] + max_new_tokens <= limit or len(turns) <= 1:
                break
            turns, dropped = turns[2:], dropped + 1
        if isinstance(limit, int) and input_ids.shape[1] >= limit:
            raise UsageError(f"this message is {input_ids.shape[1]} tokens and the model's context is {limit}", "send a shorter message")
        if dropped:
            warn(f"the conversation is longer than the model's context ({limit} tokens): the oldest {dropped} "
                 f"exchange{'s are' if dropped > 1 else ' is'} left out of this prompt")
        return input_ids

    def close(self) -> None:
        self.session.close()


def open_local_engine(model: str | None, loras, loader_name: str | None, options, template: str = "auto") -> LocalChatEngine:
    """Plan (every adapter checked before a weight loads), load, attach: the engine ``lorakit chat`` talks to."""
    from lorakit.inference.planning import open_session

    session, _ = open_session(model, loras, loader_name, options)
    engine = LocalChatEngine(session, template)
    engine.render(None, [{"role": "user", "content": ""}])  # an impossible --template fails now, not at the first turn
    return engine
