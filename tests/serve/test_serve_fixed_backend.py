"""A backend without per-request adapters serves the --lora set it started with, and says so for others."""

from __future__ import annotations

import dataclasses

import openai
import pytest
from serve_helpers import chat, start_app


def test_backend_without_serve_per_request_serves_its_one_set(tiny_model_dir, serve_loras, served, monkeypatch):
    from lorakit.loaders.options import LoadOptions
    from lorakit.loaders.registry import choose_loader
    from lorakit.serving import runtime as runtime_module
    from lorakit.serving.engines import ServeRequest

    def one_set_loader(model_path, options, requested=None):
        loader = choose_loader(model_path, options, requested)
        narrowed = type(loader)()
        narrowed.capabilities = dataclasses.replace(loader.capabilities, serve_per_request=False, serve_mixed_batch=False)
        return narrowed

    monkeypatch.setattr(runtime_module, "choose_loader", one_set_loader)
    request = ServeRequest(model_path=tiny_model_dir, model_id=tiny_model_dir.name, loras=(("a", serve_loras / "a", 1.0),),
                           loras_dir=serve_loras, load_options=LoadOptions())
    runtime = runtime_module.open_runtime(request)
    runtime.engine.on_finished = lambda seq: runtime.release(seq.mix)
    runtime.engine.start()
    running = start_app(runtime)
    try:
        client = running.client()
        assert [m.id for m in client.models.list().data] == [tiny_model_dir.name, "a"]
        assert chat(client, "a") == chat(served.client(), "a")  # the backend's own LoRA path, same text
        for other in ("b", tiny_model_dir.name, "a:0.5"):
            with pytest.raises(openai.BadRequestError, match="one LoRA set for the whole server"):
                chat(client, other)
    finally:
        running.stop()
        runtime.close()
