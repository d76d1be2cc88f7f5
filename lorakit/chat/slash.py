"""The REPL's slash commands: each one a method, every misuse a one-line error that names the usage."""

from __future__ import annotations

import shlex

from lorakit.errors import UsageError

HELP = """commands:
  /lora add NAME[:W]   use a LoRA (a folder or a name under $LORAKIT_HOME/loras; with --url, the server's name)
  /lora remove NAME    stop using a LoRA
  /lora                the LoRAs in use
  /weight NAME W       set a LoRA's weight (W a number, e.g. 0.5)
  /system TEXT         set the system message (/system alone clears it)
  /reset               forget the conversation (the system message and LoRAs stay)
  /save FILE           write the conversation as JSON ({"messages": [...]}, a chat training row)
  /help                this list
  /quit                leave (Ctrl-D works too)
anything else is sent as your next message; Ctrl-C stops a reply."""

USAGE = {
    "lora": "/lora add NAME[:W] | /lora remove NAME | /lora",
    "weight": "/weight NAME W",
    "save": "/save FILE",
}


class SlashCommands:
    """Runs ``/name args`` against a REPL (its engine, conversation and output)."""

    def __init__(self, repl):
        self.repl = repl

    def run(self, line: str) -> bool:
        """Run one command line; returns False when the REPL should end."""
        name, _, rest = line[1:].partition(" ")
        handler = getattr(self, f"do_{name}", None) if name.isidentifier() else None
        if handler is None:
            raise UsageError(f"unknown command '/{name}'", "type /help for the list")
        return handler(rest.strip()) is not False

    @staticmethod
    def _words(rest: str, command: str) -> list[str]:
        try:
            return shlex.split(rest)
        except ValueError as error:
            raise UsageError(f"/{command}: {error}", f"usage: {USAGE[command]}") from None

    def do_help(self, rest: str) -> None:
        self.repl.say(HELP)

    def do_quit(self, rest: str) -> bool:
        return False

    do_exit = do_quit

    def do_lora(self, rest: str) -> None:
        words = self._words(rest, "lora")
        engine = self.repl.engine
        if not words or words == ["list"]:
            loras = engine.loras()
            shown = [f"{name} ({'default weight' if weight is None else f'weight {weight:g}'})" for name, weight in loras]
            self.repl.note("in use: " + ", ".join(shown) if shown else "no LoRA in use")
            return
        action, args = words[0], words[1:]
        if action not in ("add", "remove") or len(args) != 1:
            raise UsageError(f"/lora {rest}: expected {'one name' if action in ('add', 'remove') else 'add, remove or nothing'}", f"usage: {USAGE['lora']}")
        self.repl.note(engine.add_lora(args[0]) if action == "add" else engine.remove_lora(args[0]))

    def do_weight(self, rest: str) -> None:
        from lorakit.store.lora_spec import parse_weight

        words = self._words(rest, "weight")
        if len(words) != 2:
            raise UsageError("/weight needs a LoRA name and a number", f"usage: {USAGE['weight']}, e.g. /weight my-lora 0.5")
        self.repl.note(self.repl.engine.set_weight(words[0], parse_weight(words[1], "/weight")))

    def do_system(self, rest: str) -> None:
        self.repl.conversation.system = rest or None
        self.repl.note(f"system message set ({len(rest)} characters)" if rest else "system message cleared")

    def do_reset(self, rest: str) -> None:
        count = len(self.repl.conversation.messages) // 2
        self.repl.conversation.reset()
        self.repl.note(f"conversation cleared ({count} exchange{'s' if count != 1 else ''} forgotten)")

    def do_save(self, rest: str) -> None:
        words = self._words(rest, "save")
        if len(words) != 1:
            raise UsageError("/save needs one file name", f"usage: {USAGE['save']}, e.g. /save chat.json")
        path = self.repl.save(words[0])
        self.repl.note(f"saved {len(self.repl.conversation.messages)} messages to {path}")
