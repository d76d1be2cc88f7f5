"""Serving adapters over HTTP: the request a serve engine gets, and the engines plugins register.

``lorakit serve`` builds one :class:`ServeRequest` from its options and hands it to the engine the
user chose (``--engine``, default ``lorakit``); the vLLM plugin package registers another engine.
"""
