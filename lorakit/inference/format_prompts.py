"""Inference prompts in a format file's shape (text-generation-webui's JSON), so ``generate`` shows a
LoRA exactly the text it was trained on, whichever format that was.

A format file maps a set of row keys to a template (``"instruction,output": "USER: %instruction%
ASSISTANT: %output%"``). At inference the answer is what the model writes, so the prompt is the
template cut at its answer placeholder (the last one), with the other placeholders filled by role:
the prompt goes to ``instruction`` (``userprompt`` in llama2-chat), ``--input`` to ``input``,
``--system`` to ``system``/``systemprompt``. The template used is the one whose keys are exactly the
roles given, as in training; a system message the format has no place for is left out with a warning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lorakit.errors import UsageError

PLACEHOLDER = re.compile(r"%([A-Za-z0-9_.\-]+)%")
PROMPT_KEYS = ("instruction", "userprompt", "prompt", "question", "user")
SYSTEM_KEYS = ("system", "systemprompt")


def shipped_templates(name: str) -> dict[str, str]:
    from importlib import resources

    path = Path(str(resources.files("lorakit") / "data" / "formats" / f"{name}.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def _fill(template: str, prompt: str, input_text: str | None, system: str | None, answer: str | None = None) -> str | None:
    """The prompt from one template, or ``None`` when its keys do not fit the roles given.

    Without ``answer`` the text stops where the answer would start (what the model is asked to
    continue); with it, the whole exchange (an earlier turn of a conversation).
    """
    names = PLACEHOLDER.findall(template)
    if not names:
        return None
    answer_key, values = names[-1], {}
    for key in dict.fromkeys(names[:-1]):
        if key in PROMPT_KEYS:
            values[key] = prompt
        elif key == "input" and input_text:
            values[key] = input_text
        elif key in SYSTEM_KEYS and system:
            values[key] = system
        else:
            return None
    roles = {"prompt"} | ({"input"} if input_text else set()) | ({"system"} if system else set())
    used = {"prompt" if key in PROMPT_KEYS else "system" if key in SYSTEM_KEYS else key for key in values}
    if used != roles:
        return None
    if answer is None:
        template = template[: template.rindex(f"%{answer_key}%")]
    else:
        values[answer_key] = answer
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), template)


def render_format(name: str, templates: dict[str, str], prompt: str, input_text: str | None = None, system: str | None = None,
                  warn=None, answer: str | None = None) -> str:
    """The template whose keys are the roles given, filled; ``answer`` completes the exchange."""
    candidates = [template for template in templates.values() if isinstance(template, str)]
    for text in (_fill(template, prompt, input_text, system, answer) for template in candidates):
        if text is not None:
            return text
    if system:
        for text in (_fill(template, prompt, input_text, None, answer) for template in candidates):
            if text is not None:
                if warn:
                    warn(f"the '{name}' format has no place for a system message; --system is left out")
                return text
    what = "a prompt with --input" if input_text else "a prompt"
    raise UsageError(f"the '{name}' format has no template for {what}", "drop --input, or pick another --template")


def has_system_form(templates: dict[str, str]) -> bool:
    """Whether some template of the format takes a system message (next to the prompt alone)."""
    return any(isinstance(t, str) and _fill(t, "p", None, "s") is not None for t in templates.values())
