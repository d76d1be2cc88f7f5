"""The chat REPL: read a line, run a slash command or stream the next reply, keep the history.

It drives any engine with the chat engine's methods (``describe``, ``loras``, ``add_lora``,
``remove_lora``, ``set_weight``, ``reply``): the in-process one
(:class:`lorakit.inference.chat_engine.LocalChatEngine`) or a server
(:class:`lorakit.chat.remote.RemoteChatEngine`). Replies stream to stdout; what the REPL says about
itself (LoRA changes, timings, errors) goes to stderr, so ``lorakit chat < questions.txt >
answers.txt`` keeps only the answers.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from lorakit.chat.line_input import LineInput
from lorakit.chat.slash import SlashCommands
from lorakit.errors import LorakitError
from lorakit.inference.conversation import Conversation
from lorakit.inference.generation import SamplingSettings


class ChatRepl:
    def __init__(self, engine, settings: SamplingSettings, system: str | None = None, history: Path | None = None,
                 show_stats: bool = True):
        self.engine = engine
        self.settings = settings
        self.conversation = Conversation(system=system)
        self.history = history
        self.show_stats = show_stats
        self.commands = SlashCommands(self)

    # ---- output ------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _stream(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        lines = LineInput(history=self.history)
        self.note(f"chatting with {self.engine.describe()}. Type /help for commands, Ctrl-D to leave.")
        while True:
            try:
                line = lines.read()
            except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as a shell does
                sys.stderr.write("\n")
                continue
            if line is None:
                return 0
            if not line.strip():
                continue
            try:
                if line.lstrip().startswith("/"):
                    if not self.commands.run(line.strip()):
                        return 0
                else:
                    self.turn(line)
            except LorakitError as error:
                self.note(f"error: {error.one_line()}")

    def turn(self, text: str) -> None:
        """One exchange: the reply streams as it comes; an interrupted reply is not kept in the history."""
        turns = self.conversation.with_user(text)
        try:
            reply = self.engine.reply(self.conversation.system, turns, self.settings, on_text=self._stream)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            self.note("(reply stopped; it is not kept in the conversation)")
            return
        sys.stdout.write("\n")
        sys.stdout.flush()
        self.conversation.add_exchange(text, reply.text)
        if self.show_stats:
            self.note(f"({reply.new_tokens} tokens, {reply.tokens_per_s:.1f} tokens/s, stopped at {reply.finish_reason})")

    def save(self, file: str) -> Path:
        return self.conversation.save(
            Path(file),
            loras=[{"name": name, "weight": weight} for name, weight in self.engine.loras()],
            sampling=asdict(self.settings),
        )


def run_chat(engine, settings: SamplingSettings, system: str | None = None, keep_history: bool = True) -> int:
    """The REPL on ``engine`` until the user leaves; the engine is closed afterwards."""
    from lorakit.chat.line_input import history_path

    try:
        return ChatRepl(engine, settings, system, history_path() if keep_history else None).run()
    finally:
        engine.close()
