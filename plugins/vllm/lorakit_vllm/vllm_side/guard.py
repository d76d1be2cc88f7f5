"""A middleware in vLLM's server: ``POST /v1/load_lora_adapter`` loads only lorakit's adapters or hub ids.

vLLM's own endpoint loads whatever folder a client names, once ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``
is on (and the lorakit resolver needs it on). ``lorakit serve``'s rule holds here too: a request from
the network never makes the server read an arbitrary path on the machine. Accepted: an absolute path
to an adapter folder inside the server's ``loras/`` folder, or a hub id ``ORG/NAME`` (vLLM downloads
it) that is not also a path on this machine; anything else is answered 400 before vLLM sees it.
Runs inside vLLM's interpreter (``--middleware``); imports nothing of lorakit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

LORAS_ENV = "LORAKIT_VLLM_LORAS_DIR"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
ROUTE = "/v1/load_lora_adapter"


def allowed(lora_path: str, loras_dir: str) -> bool:
    text = lora_path.strip()
    candidate = Path(text).expanduser()
    if loras_dir and candidate.is_absolute():
        root, resolved = Path(loras_dir).resolve(), candidate.resolve()
        return resolved != root and root in resolved.parents and (resolved / "adapter_config.json").is_file()
    return bool(HUB_ID.match(text)) and ".." not in text and not candidate.exists()


async def guard_lora_paths(request, call_next):
    if request.method == "POST" and request.url.path.rstrip("/") == ROUTE:
        try:
            body = json.loads((await request.body()) or b"{}")
        except ValueError:
            body = {}
        path = body.get("lora_path") if isinstance(body, dict) else None
        if isinstance(path, str) and not allowed(path, os.environ.get(LORAS_ENV, "")):
            from starlette.responses import JSONResponse

            message = (f"lora_path '{path}' is not an adapter folder in this server's loras folder nor a hub id; "
                       "runtime loading takes only those (give the folder's full path, or ORG/NAME)")
            return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": "lora_path",
                                           "code": 400}}, status_code=400)
    return await call_next(request)
