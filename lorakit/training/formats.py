"""Format files (text-generation-webui style) and the formatter that applies them.

A format file is a JSON object whose keys are comma-separated sets of dataset keys and whose values
are templates with ``%key%`` placeholders::

    {"instruction,output": "### Instruction:\\n%instruction%\\n\\n### Response:\\n%output%",
     "instruction,input,output": "..."}

A row uses the template whose key set equals the row's set of non-empty string fields; a row with
no match is an error naming the row and its keys. Placeholders are replaced in one pass, so a value
that itself contains ``%output%`` is inserted literally, never expanded again.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.training.formatters import Rendered, RowError

PLACEHOLDER = re.compile(r"%([A-Za-z0-9_.\-]+)%")


def shipped_formats_dir() -> Path:
    return Path(str(resources.files("lorakit") / "data" / "formats"))


def shipped_format_names() -> list[str]:
    return sorted(path.stem for path in shipped_formats_dir().glob("*.json"))


def row_keys(row: dict) -> frozenset[str]:
    """The keys a format matches on: string fields with non-blank content (webui's rule)."""
    return frozenset(key for key, value in row.items() if isinstance(value, str) and value.strip())


def parse_format(data, source: str) -> dict[frozenset[str], str]:
    """Validate a format object and index its templates by key set."""
    if not isinstance(data, dict) or not data:
        raise LorakitError(f"format file {source} must be a non-empty JSON object of \"key,key\": \"template\" pairs")
    templates: dict[frozenset[str], str] = {}
    for spec, template in data.items():
        keys = frozenset(part.strip() for part in str(spec).split(",") if part.strip())
        if not keys or not isinstance(template, str):
            raise LorakitError(f"format file {source}: entry '{spec}' needs comma-separated keys and a template string")
        unknown = sorted(set(PLACEHOLDER.findall(template)) - keys)
        if unknown:
            raise LorakitError(
                f"format file {source}: template '{spec}' uses %{unknown[0]}% which is not one of its keys",
                "list every placeholder's key in the entry's key set",
            )
        if keys in templates:
            raise LorakitError(f"format file {source}: key set '{spec}' appears twice")
        templates[keys] = template
    return templates


def describe_key_sets(templates: dict[frozenset[str], str]) -> str:
    return "; ".join("{" + ",".join(sorted(keys)) + "}" for keys in templates)


class FormatFileFormatter:
    """Renders rows through a format file's templates."""

    kind = "format"

    def __init__(self, name: str, templates: dict[frozenset[str], str], source: str):
        self.name = name
        self.templates = templates
        self.source = source
        self.description = f"format file {source} ({describe_key_sets(templates)})"

    @classmethod
    def from_path(cls, path: Path, name: str | None = None) -> FormatFileFormatter:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # webui reads format files with utf-8-sig too
        except json.JSONDecodeError as error:
            raise LorakitError(f"format file {path} is not valid JSON (line {error.lineno}: {error.msg})") from None
        except OSError as error:
            raise LorakitError(f"cannot read format file {path}: {error.strerror}") from None
        return cls(name or path.stem, parse_format(data, str(path)), str(path))

    def template_for(self, row: dict) -> str | None:
        return self.templates.get(row_keys(row))

    def accepts(self, row: dict) -> bool:
        return isinstance(row, dict) and self.template_for(row) is not None

    def render(self, row: dict, tokenizer=None) -> Rendered:
        template = self.template_for(row)
        if template is None:
            keys = ",".join(sorted(row_keys(row))) or "no non-empty text fields"
            raise RowError(f"has keys {{{keys}}} but format '{self.name}' only accepts {describe_key_sets(self.templates)}")
        text = PLACEHOLDER.sub(lambda match: row[match.group(1)], template)
        return Rendered(text)

    def as_record(self) -> dict:
        """What the adapter's prompt_format.json stores, so inference can rebuild the prompt."""
        return {
            "name": self.name,
            "kind": self.kind,
            "templates": {",".join(sorted(keys)): template for keys, template in self.templates.items()},
        }


def shipped_formatters() -> list[FormatFileFormatter]:
    return [FormatFileFormatter.from_path(shipped_formats_dir() / f"{name}.json", name) for name in shipped_format_names()]
