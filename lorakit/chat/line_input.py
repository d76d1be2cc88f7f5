"""Reading the user's lines: readline editing and a history file on a terminal, plain lines otherwise.

On a terminal, ``readline`` gives the usual line editing (arrows, Ctrl-A/E, Ctrl-R search) and the
history is kept in ``$LORAKIT_HOME/chat_history`` across sessions (appended after every line, so a
killed session keeps what was typed). With stdout redirected (``lorakit chat > answers.txt``) the
prompt goes to stderr and lines are read without editing (Python's ``input`` edits only when both
ends are a terminal). Piped input is read line by line with no prompt, which is what scripts and
tests drive.
"""

from __future__ import annotations

import sys
from pathlib import Path

HISTORY_LENGTH = 1000


def history_path() -> Path:
    from lorakit.store.home import home

    return home() / "chat_history"


class LineInput:
    def __init__(self, prompt: str = "you> ", history: Path | None = None):
        self.prompt = prompt
        self.interactive = sys.stdin.isatty()
        self.history = history if self.interactive else None
        self._readline = None
        if self.interactive:
            self._set_up_readline()

    def _set_up_readline(self) -> None:
        try:
            import readline
        except ImportError:  # no GNU readline (e.g. Windows): input() still works, without editing
            return
        self._readline = readline
        readline.set_history_length(HISTORY_LENGTH)
        if self.history is not None and self.history.is_file():
            try:
                readline.read_history_file(str(self.history))
                if readline.get_current_history_length() > 2 * HISTORY_LENGTH:
                    readline.write_history_file(str(self.history))  # appending grows the file; this keeps the last lines
            except OSError:
                pass

    def read(self) -> str | None:
        """The next line without its newline, or ``None`` at the end of input (Ctrl-D)."""
        if not self.interactive:
            line = sys.stdin.readline()
            return None if line == "" else line.rstrip("\r\n")
        try:
            if sys.stdout.isatty():
                line = input(self.prompt)
            else:  # `lorakit chat > answers.txt`: the prompt is not data, so it goes to the terminal via stderr
                sys.stderr.write(self.prompt)
                sys.stderr.flush()
                line = input()
        except EOFError:
            (sys.stdout if sys.stdout.isatty() else sys.stderr).write("\n")  # end the prompt's line, where the prompt went
            return None
        self._remember(line)
        return line

    def _remember(self, line: str) -> None:
        if self._readline is None or self.history is None or not line.strip():
            return
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            if not self.history.exists():
                self.history.touch(mode=0o600)  # what a user typed is theirs alone
            self._readline.append_history_file(1, str(self.history))
        except OSError:
            self.history = None  # an unwritable home must not end the chat; the session history stays
