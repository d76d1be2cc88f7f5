"""The hook specifications: the contract between lorakit and its plugins.

Every hook is named after what it registers. Hooks that register things receive a ``register``
callback owned by the host, so plugins never touch the host's registries directly. Implementations
may accept a subset of a hook's arguments (pluggy passes only the names they ask for).

A test (``tests/core/test_hookspecs_documented.py``) fails when a hook here lacks a docstring that
names each of its arguments, and when ``docs/plugins.md`` does not list it with its exact signature.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("lorakit")


@hookspec
def register_commands(cli):
    """Add sub-commands to the root ``lorakit`` click group.

    :param cli: the root :class:`click.Group`; call ``cli.add_command(command)`` or decorate with
        ``@cli.command()``. Keep heavy imports (torch, transformers) inside the command body so that
        ``lorakit --help`` stays instant.

    .. versionadded:: 0.1.0
    """


@hookspec
def register_loaders(register):
    """Register loader backends.

    :param register: call ``register(loader)`` with an instance of :class:`lorakit.api.Loader`
        for every backend the plugin provides. The loader's ``capabilities`` record is what
        ``lorakit loaders`` shows and what ``apply``/``generate``/``train``/``merge`` plan around.

    .. versionadded:: 0.1.0
    """


@hookspec
def register_formatters(register):
    """Register dataset formatters used by ``lorakit train`` and ``lorakit eval``.

    :param register: call ``register(formatter)`` with an object that has a ``name`` (what
        ``--format NAME`` selects) and the :class:`lorakit.api.Formatter` interface.

    .. versionadded:: 0.1.0
    """


@hookspec(firstresult=True)
def resolve_loader(model_path, options):
    """Pick the loader backend for a model folder; the first non-``None`` answer wins.

    :param model_path: :class:`pathlib.Path` of the resolved model folder (its ``config.json`` and
        weight files can be inspected without loading them).
    :param options: the :class:`lorakit.api.LoadOptions` the user asked for.
    :return: a registered loader name, or ``None`` to let another plugin decide. The built-in
        Transformers loader answers last (``trylast``) for any Hugging Face folder.

    .. versionadded:: 0.1.0
    """


@hookspec
def prepare_model(model, loader_name, model_path, options, purpose, config):
    """Adjust a freshly loaded base model before any LoRA is attached; runs for every plugin.

    Every backend's session fires it after each (re)load of the base, through
    :meth:`lorakit.api.Session.reload_base`. This is where a monkey patch belongs (for example
    replacing quantized linear layers).

    :param model: the loaded model object (a ``torch.nn.Module`` for PyTorch-based loaders).
    :param loader_name: the name of the loader that produced it.
    :param model_path: :class:`pathlib.Path` of the model folder it was loaded from.
    :param options: the :class:`lorakit.api.LoadOptions` it was loaded with.
    :param purpose: ``"inference"``, ``"train"`` or ``"merge-verify"`` (same as ``options.purpose``).
    :param config: deprecated since 0.2.0 (use the arguments above): a dict with ``model_path``,
        ``options`` and ``purpose``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 explicit ``model_path``, ``options`` and ``purpose`` arguments.
    """


@hookspec
def register_serve_engines(register):
    """Register serving engines for ``lorakit serve --engine NAME``.

    :param register: call ``register(engine)`` with a :class:`lorakit.api.ServeEngine` (``name``,
        one-line ``summary``, ``run(request) -> int``). ``run`` gets a :class:`lorakit.api.ServeRequest`
        (model, adapters and their names, host, port, key, bounds, load options), serves until SIGTERM
        or Ctrl-C, prints ``listening on http://HOST:PORT`` on stderr once ready, and returns the exit
        code. lorakit's own engine is registered the same way under the name ``lorakit``.

    .. versionadded:: 0.2.0
    """
