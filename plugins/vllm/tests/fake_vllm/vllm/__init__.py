"""A stand-in for vLLM in the plugin's plumbing tests: just enough to be found and to serve /health."""
