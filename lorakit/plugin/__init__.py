"""The plugin host: lorakit's hook specifications and the one plugin manager.

- :mod:`~lorakit.plugin.spec`: every hook, documented (``docs/plugins.md`` lists them).
- :mod:`~lorakit.plugin.manager`: builds a manager (entry points, built-ins, env switches, isolation
  of a broken plugin).
- :mod:`~lorakit.plugin.host`: the cached manager and the typed calls the library makes through it.

The lowest layer of the library: it imports nothing of lorakit but ``errors``, and only the host
knows the built-in plugins' module names (as strings).
"""
