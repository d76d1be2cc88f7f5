"""Fetching adapters and models from a Hugging Face hub (or a mirror set with ``HF_ENDPOINT``).

Small modules, each with one job:

- ``repo_ref``   parse ``ORG/NAME[:REVISION]`` (or a hub URL) and name the local folder
- ``settings``   endpoint, offline mode, cache folder and token, read from the environment at call time
- ``listing``    the files of a repository at one commit, with the hub's size and hashes (or the cache's, offline)
- ``selection``  which files to fetch: safetensors over pickle, ``--include`` / ``--exclude``
- ``transfer``   parallel ``hf_hub_download`` calls into the standard HF cache, each file verified
- ``retry``      transient errors retried with exponential backoff
- ``progress``   rich bars per file and overall on stderr (fed through ``tqdm_class``)
- ``integrity``  sha256 / git blob hashes, the ``lorakit_download.json`` record and ``--check``
- ``install``    target folder, what is already there, disk space, links into the HF cache put in place atomically
- ``pipeline``   the steps in order: ``download_repo`` and ``check_download``
- ``hub_errors`` library errors -> one actionable line, with the token scrubbed out; what is transient
- ``resolve``    hub ids as MODEL / ``--lora``: local first, else fetched once through ``download_repo``
- ``upload``     ``lorakit upload``: the adapter, its records and the model card in one commit
- ``model_card`` the generated ``README.md`` (also written by ``train``), and the base's hub id recorded
- ``dataset_source`` ``--dataset`` from parquet/CSV files or hub datasets, as JSON Lines rows

Nothing here imports torch; huggingface_hub is imported inside functions.
"""
