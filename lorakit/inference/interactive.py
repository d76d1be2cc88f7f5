"""The small ``apply --interactive`` session: add, remove, weight, list, generate, probe.

Add and remove follow the backend's capability record: on a fast-removal backend a LoRA is
detached in milliseconds; on a reload backend lorakit reloads the base and says what that cost.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from lorakit.errors import LorakitError, UsageError

HELP = """commands:
  add PATH[:WEIGHT]     attach a LoRA
  remove NAME           detach a LoRA (or reload the base, if the backend needs it)
  weight NAME W         set a LoRA's weight
  list                  attached LoRAs and the backend's capabilities
  generate TEXT         generate with the active LoRAs (greedy, 60 tokens)
  probe                 measure what each LoRA changes
  help, quit"""


class InteractiveSession:
    def __init__(self, session, max_new_tokens: int = 60):
        self.session = session
        self.max_new_tokens = max_new_tokens

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
        from lorakit.inference.planning import check_planned_lora, plan_loras

        if not text:
            self.say("usage: add PATH[:WEIGHT]")
            return
        (planned,) = plan_loras([text], self.session.options)
        same = next((lora for lora in self.session.loras if Path(lora.path).resolve() == planned.path.resolve()), None)
        if same is not None:  # the rule of --lora X --lora X, in every command
            raise UsageError(f"'{planned.spec.name}' is already attached as {same.name}", f"change its weight with: weight {same.name} W")
        check_planned_lora(self.session.loader, planned, self.session.model_path, self.session.options)
        name = planned.name if planned.name not in self.session.names() else f"{planned.name}-{len(self.session.loras) + 1}"
        report = self.session.add_lora(name, planned.path, planned.spec.weight, adapter=planned.adapter)
        self.say(f"added {name} (weight {planned.spec.weight:g}) in {report.seconds * 1000:.0f} ms")

    def do_remove(self, name: str = "", *args) -> None:
        if not name:
            self.say("usage: remove NAME")
            return
        report = self.session.remove_lora(name)
        self.say(f"removed {name} in {report.seconds * 1000:.0f} ms ({report.detail})")

    def do_weight(self, name: str = "", value: str = "", *args) -> None:
        from lorakit.store.lora_spec import parse_weight

        if not name or not value:
            self.say("usage: weight NAME W  (W a number, e.g. 0.5)")
            return
        weight = parse_weight(value, "weight")
        report = self.session.set_weight(name, weight)
        self.say(f"{name} weight {weight:g} ({report.seconds * 1000:.0f} ms)")

    def do_list(self, *args) -> None:
        if not self.session.loras:
            self.say("no LoRA attached")
        for lora in self.session.loras:
            self.say(f"{lora.name}  weight {lora.weight:g}  {lora.path}")
        self.say(f"backend '{self.session.loader.name}': " + ", ".join(f"{k}={v}" for k, v in self.session.capabilities.to_dict().items() if k != "notes"))

    def do_generate(self, text: str = "", *args) -> None:
        from lorakit.inference.generation import SamplingSettings, generate
        from lorakit.inference.prompts import encode, pick_template, render

        if not text.strip():
            self.say("usage: generate TEXT")
            return
        template = pick_template("auto", self.session.tokenizer, [])
        prompt, special = render(template, self.session.tokenizer, text)
        result = generate(self.session, encode(self.session.tokenizer, prompt, special), SamplingSettings(max_new_tokens=self.max_new_tokens, greedy=True))
        self.say(result.text)
        self.say(f"({result.new_tokens} tokens, {result.tokens_per_s:.1f} tokens/s)")

    def do_probe(self, *args) -> None:
        from lorakit.inference import probe
        for effect in probe.measure(self.session):
            self.say(effect.describe())
