"""Fetching adapters and models from a Hugging Face hub (or a mirror set with ``HF_ENDPOINT``).

Small modules, each with one job:

- ``repo_ref``   parse ``ORG/NAME[:REVISION]`` (or a hub URL) and name the local folder
- ``settings``   endpoint, offline mode, cache folder and token, read from the environment at call time
- ``listing``    the files of a repository at one commit, with the hub's size and hashes (or the cache's, offline)
- ``selection``  which files to fetch: safetensors over pickle, ``--include`` / ``--exclude``
- ``transfer``   parallel ``hf_hub_download`` calls into the standard HF cache, with retries and progress
- ``integrity``  sha256 / git blob hashes, the ``lorakit_download.json`` record and ``--check``
- ``install``    put the verified files in place under a temporary name and rename it into the target
- ``hub_errors`` library errors -> one actionable line, with the token scrubbed out

Nothing here imports torch; huggingface_hub is imported inside functions.
"""
