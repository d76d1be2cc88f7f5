"""The ``apply --interactive`` session: add, remove, weight, list, generate (a chat turn), reset, probe.

``generate`` talks through the chat engine ``lorakit chat`` uses (:mod:`lorakit.inference.chat_engine`):
the conversation continues from turn to turn (``reset`` forgets it), the reply streams, and the
sampling settings are apply's sampling options. Add and remove follow the backend's capability
record: on a fast-removal backend a LoRA is detached in milliseconds; on a reload backend lorakit
reloads the base and says what that cost.
"""

from __future__ import annotations

import shlex
import sys

from lorakit.errors import LorakitError
from lorakit.inference.chat_engine import LocalChatEngine
from lorakit.inference.conversation import Conversation
from lorakit.inference.generation import SamplingSettings

HELP = """commands:
  add PATH[:WEIGHT]     attach a LoRA
  remove NAME           detach a LoRA (or reload the base, if the backend needs it)
  weight NAME W         set a LoRA's weight
  list                  attached LoRAs and the backend's capabilities
  generate TEXT         the next chat turn with the active LoRAs (streamed; the conversation continues)
  reset                 forget the conversation
  probe                 measure what each LoRA changes
  help, quit
(lorakit chat is the full chat REPL, with readline editing and /save)"""


class InteractiveSession:
    def __init__(self, session, settings: SamplingSettings | None = None):
        self.session = session
        self.engine = LocalChatEngine(session, command_prefix="")
        self.settings = settings or SamplingSettings()
        self.conversation = Conversation()

    def say(self, text: str) -> None:
        print(text, flush=True)

    def run(self) -> None:
        caps = self.session.capabilities
        self.say(f"lorakit session on '{self.session.loader.name}' (LoRAs at once: {caps.lora_limit_text()}, removal: {caps.removal}). Type 'help'.")
        while True:
            try:
                line = input("lorakit> ") if sys.stdin.isatty() else sys.stdin.readline()
            except EOFError:
                break
            if line == "":
                break
            line = line.strip()
            if not line:
                continue
            if line in ("quit", "exit", "q"):
                break
            try:
                self.dispatch(line)
            except LorakitError as error:
                self.say(f"error: {error.one_line()}")

    def dispatch(self, line: str) -> None:
        command, _, rest = line.partition(" ")
        args = shlex.split(rest) if command != "generate" else [rest]
        handler = getattr(self, f"do_{command}", None)
        if handler is None:
            self.say(f"unknown command '{command}'; type 'help'")
            return
        handler(*args)

    def do_help(self, *args) -> None:
        self.say(HELP)

    def do_add(self, text: str = "", *args) -> None:
        if not text:
            self.say("usage: add PATH[:WEIGHT]")
            return
        self.say(self.engine.add_lora(text))

    def do_remove(self, name: str = "", *args) -> None:
        if not name:
            self.say("usage: remove NAME")
            return
        self.say(self.engine.remove_lora(name))

    def do_weight(self, name: str = "", value: str = "", *args) -> None:
        from lorakit.store.lora_spec import parse_weight

        if not name or not value:
            self.say("usage: weight NAME W  (W a number, e.g. 0.5)")
            return
        self.say(self.engine.set_weight(name, parse_weight(value, "weight")))

    def do_list(self, *args) -> None:
        if not self.session.loras:
            self.say("no LoRA attached")
        for lora in self.session.loras:
            self.say(f"{lora.name}  weight {lora.weight:g}  {lora.path}")
        self.say(f"backend '{self.session.loader.name}': " + ", ".join(f"{k}={v}" for k, v in self.session.capabilities.to_dict().items() if k != "notes"))

    def do_generate(self, text: str = "", *args) -> None:
        if not text.strip():
            self.say("usage: generate TEXT")
            return
        turns = self.conversation.with_user(text)
        reply = self.engine.reply(self.conversation.system, turns, self.settings, on_text=lambda piece: print(piece, end="", flush=True))
        self.conversation.add_exchange(text, reply.text)
        self.say("")
        self.say(f"({reply.new_tokens} tokens, {reply.tokens_per_s:.1f} tokens/s)")

    def do_reset(self, *args) -> None:
        self.conversation.reset()
        self.say("conversation cleared")

    def do_probe(self, *args) -> None:
        from lorakit.inference import probe
        for effect in probe.measure(self.session):
            self.say(effect.describe())
