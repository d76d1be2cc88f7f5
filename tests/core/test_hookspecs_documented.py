"""Every hook is documented: a docstring naming each argument, and docs/plugins.md with its signature."""

import inspect
from pathlib import Path

from lorakit.plugin import spec as hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _hooks():
    return [
        (name, fn) for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "lorakit_spec")
    ]


def test_hooks_exist():
    assert {name for name, _ in _hooks()} >= {"register_commands", "register_loaders", "register_formatters", "resolve_loader", "prepare_model"}


def test_each_hook_documents_each_argument():
    docs = DOCS.read_text()
    for name, fn in _hooks():
        doc = inspect.getdoc(fn) or ""
        for arg in inspect.signature(fn).parameters:
            assert f":param {arg}:" in doc, f"{name} does not document {arg}"
        assert f"`{name}{inspect.signature(fn)}`" in docs, f"docs/plugins.md lacks `{name}{inspect.signature(fn)}`"
