"""Build a plugin manager: specs, blocked plugins, entry points, built-ins, ``check_pending``.

Nothing happens at import time; ``get_plugin_manager()`` builds a fresh manager on demand
(:mod:`lorakit.plugin.host` keeps the one the process uses). A third-party plugin that fails to import or register is reported once on
stderr and skipped, so one broken package never takes the CLI down.

Environment switches:
- ``LORAKIT_LOAD_PLUGINS=a,b``: load only these entry-point plugins (empty: none).
- ``LORAKIT_DISABLE_PLUGINS=a,b``: block these plugins (entry points or built-ins).
- ``LORAKIT_TRACE_PLUGINS=1``: trace every hook call on stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from typing import Any

import pluggy

from lorakit.plugin import spec

PROJECT = "lorakit"

# Plugin name -> module. The host names its built-ins only here, as strings: no library module
# imports a backend (import-linter checks it), and the names are what LORAKIT_DISABLE_PLUGINS takes.
BUILTIN_PLUGINS = {
    "transformers_loader": "lorakit.builtin_plugins.transformers_loader",
    "autogptq_loader": "lorakit.builtin_plugins.autogptq_loader",
    "formatters": "lorakit.builtin_plugins.formatters",
    "serve_engine": "lorakit.builtin_plugins.serve_engine",
}

_reported: set[tuple[str, str]] = set()


def report_plugin_failure(plugin: str, stage: str, error: BaseException) -> None:
    """Say once per plugin and stage that a plugin failed; the CLI keeps going."""
    key = (plugin, stage)
    if key in _reported:
        return
    _reported.add(key)
    message = f"lorakit: plugin '{plugin}' failed to {stage} and was skipped: {type(error).__name__}: {error}"
    print(message, file=sys.stderr)
    if os.environ.get("LORAKIT_DEBUG"):
        import traceback

        traceback.print_exception(error)


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _plugin_entry_points():
    return importlib.metadata.entry_points(group=PROJECT)


def get_plugin_manager(load_entry_points: bool = True, only: list[str] | None = None) -> pluggy.PluginManager:
    """A fresh manager; ``only`` limits the entry-point plugins loaded (as ``LORAKIT_LOAD_PLUGINS`` does)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(spec)
    dists: dict[str, tuple[str, str]] = {}
    pm.lorakit_dists = dists  # plugin name -> (distribution, version), for `lorakit plugins`

    for name in _env_list("LORAKIT_DISABLE_PLUGINS") or []:
        pm.set_blocked(name)

    if load_entry_points:
        wanted = only if only is not None else _env_list("LORAKIT_LOAD_PLUGINS")
        for ep in _plugin_entry_points():
            if wanted is not None and ep.name not in wanted:
                continue
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
                if ep.dist is not None:
                    dists[ep.name] = (ep.dist.metadata["Name"], ep.dist.version)
            except Exception as error:  # a broken third-party plugin must not break the CLI
                report_plugin_failure(ep.name, "load", error)

    for name, module_name in BUILTIN_PLUGINS.items():
        if pm.is_blocked(name):
            continue
        pm.register(importlib.import_module(module_name), name=name)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        report_plugin_failure(getattr(error, "plugin_name", "?"), "validate", error)

    if os.environ.get("LORAKIT_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    return pm


def _builtin_loader_names(module_name: str) -> list[str]:
    """The loaders a built-in plugin registers (its module imports only lorakit.api: cheap)."""
    found: list[str] = []
    hook = getattr(importlib.import_module(module_name), "register_loaders", None)
    if callable(hook):
        hook(register=lambda loader: found.append(getattr(loader, "name", "")))
    return found


def missing_loader_reason(loader_name: str) -> str | None:
    """Why the loader ``loader_name`` is not registered, when an environment switch is the cause.

    A blocked built-in is asked which loaders it registers; a third-party plugin that was blocked
    or left out is never imported (that is what the switch is for), so it is matched by name.
    """
    blocked = _env_list("LORAKIT_DISABLE_PLUGINS") or []
    for plugin in blocked:
        module = BUILTIN_PLUGINS.get(plugin)
        provides = loader_name in _builtin_loader_names(module) if module else _same_family(plugin, loader_name)
        if provides:
            kind = "built-in plugin" if module else "plugin"
            return (f"the '{loader_name}' loader is disabled: LORAKIT_DISABLE_PLUGINS={os.environ['LORAKIT_DISABLE_PLUGINS']} "
                    f"blocks the {kind} '{plugin}' that provides it")
    wanted = _env_list("LORAKIT_LOAD_PLUGINS")
    if wanted is not None:
        for ep in _plugin_entry_points():
            if ep.name not in wanted and _same_family(ep.name, loader_name):
                return (f"the '{loader_name}' loader is not loaded: LORAKIT_LOAD_PLUGINS={os.environ['LORAKIT_LOAD_PLUGINS']} "
                        f"leaves out the plugin '{ep.name}' that provides it")
    return None


def _same_family(plugin_name: str, loader_name: str) -> bool:
    plugin, loader = plugin_name.lower().replace("-", "_"), loader_name.lower().replace("-", "_")
    return plugin == loader or plugin.startswith(loader) or loader.startswith(plugin)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook on its own, isolating failures plugin by plugin.

    pluggy stops a hook call at the first exception; for registration hooks we want the other
    plugins to keep working, so each implementation runs separately.
    """
    results = []
    caller = getattr(pm.hook, hook_name)
    tracing = bool(os.environ.get("LORAKIT_TRACE_PLUGINS"))
    for impl in reversed(caller.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        if tracing:
            print(f"lorakit trace: {hook_name}({', '.join(args)}) -> plugin '{impl.plugin_name}'", file=sys.stderr)
        try:
            result = impl.function(**args)
        except Exception as error:
            if impl.plugin_name in BUILTIN_PLUGINS:
                raise
            report_plugin_failure(impl.plugin_name, f"run {hook_name}", error)
            continue
        if result is not None:
            results.append(result)
    return results


def plugin_records(pm: pluggy.PluginManager, include_builtin: bool = False) -> list[dict]:
    """What ``lorakit plugins`` shows: name, version, hooks, and whether it is built in."""
    dists = getattr(pm, "lorakit_dists", {})
    records = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        builtin = name in BUILTIN_PLUGINS
        if builtin and not include_builtin:
            continue
        package, version = dists.get(name, ("lorakit", _own_version()))
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        records.append(
            {
                "name": name,
                "builtin": builtin,
                "package": package,
                "version": version,
                "hooks": hooks,
            }
        )
    return records


def _own_version() -> str:
    from lorakit import __version__

    return __version__
