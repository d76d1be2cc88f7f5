"""The process's one plugin manager and the typed calls lorakit makes through it.

The library asks the host, never pluggy directly: ``registered_loaders()``, ``registered_formatters()``,
``chosen_loader_name(...)``, ``prepare_model(...)``, ``add_plugin_commands(cli)``. Each takes an
optional ``pm`` so tests can pass a manager of their own; otherwise the cached one is used (built on
first use, forgotten by :func:`reset_plugin_manager`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.errors import PluginError
from lorakit.plugin.manager import call_each, get_plugin_manager

_plugin_manager = None


def plugin_manager():
    """The process-wide plugin manager, built on first use."""
    global _plugin_manager
    if _plugin_manager is None:
        _plugin_manager = get_plugin_manager()
    return _plugin_manager


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests that install or remove plugins call this)."""
    global _plugin_manager
    _plugin_manager = None


def _named(kind: str, item: Any, needs: str | None = None) -> str:
    name = getattr(item, "name", "")
    if not name or (needs and not callable(getattr(item, needs, None))):
        what = f"a 'name' and a {needs}() method" if needs else "a name"
        raise PluginError(f"a plugin registered a {kind} without {what}: {item!r}")
    return name


def registered_loaders(pm=None) -> dict[str, Any]:
    """Every registered loader backend by name (the first registration of a name wins), sorted."""
    found: dict[str, Any] = {}

    def register(loader) -> None:
        found.setdefault(_named("loader", loader), loader)

    call_each(pm or plugin_manager(), "register_loaders", register=register)
    return dict(sorted(found.items()))


def registered_formatters(pm=None) -> dict[str, Any]:
    """Every registered dataset formatter by name (built-ins plus plugins)."""
    found: dict[str, Any] = {}

    def register(formatter) -> None:
        name = getattr(formatter, "name", None)
        if not name or not callable(getattr(formatter, "render", None)):
            raise TypeError(f"formatter {formatter!r} needs a 'name' and a render(row, tokenizer) method")
        found[name] = formatter

    call_each(pm or plugin_manager(), "register_formatters", register=register)
    return found


def registered_serve_engines(pm=None) -> dict[str, Any]:
    """Every registered serving engine by name (the first registration of a name wins), sorted."""
    found: dict[str, Any] = {}

    def register(engine) -> None:
        found.setdefault(_named("serve engine", engine, needs="run"), engine)

    call_each(pm or plugin_manager(), "register_serve_engines", register=register)
    return dict(sorted(found.items()))


def chosen_loader_name(model_path: Path, options, pm=None) -> str | None:
    """The loader a plugin claims for this model folder (``resolve_loader``, first answer wins)."""
    return (pm or plugin_manager()).hook.resolve_loader(model_path=Path(model_path), options=options)


def prepare_model(model, loader_name: str, model_path: Path, options, pm=None) -> None:
    """Fire ``prepare_model`` for every plugin, after a backend has (re)loaded a base."""
    purpose = getattr(options, "purpose", "inference")
    (pm or plugin_manager()).hook.prepare_model(
        model=model, loader_name=loader_name, model_path=Path(model_path), options=options, purpose=purpose,
        config={"model_path": Path(model_path), "options": options, "purpose": purpose},
    )


def add_plugin_commands(cli, pm=None) -> None:
    """Let every plugin add its sub-commands to the root group."""
    call_each(pm or plugin_manager(), "register_commands", cli=cli)
