"""What reaches the user's terminal, and what must not.

- :mod:`~lorakit.output.console`: the one rich console on stderr (progress, info, warnings); stdout
  is for data.
- :mod:`~lorakit.output.quiet`: third-party loggers, warnings, progress bars and banners kept off
  the terminal (back with ``LORAKIT_DEBUG=1``).
- :mod:`~lorakit.output.explain`: a library exception turned into one actionable line for the CLI's
  error boundary.
"""
