"""Which adapters a server can serve, which are in memory, and the pre-flight before any loads.

Servable: the ``--lora`` adapters, every adapter folder under ``$LORAKIT_HOME/loras`` (by folder
name) and those added at runtime (``POST /v1/load_lora_adapter``). An adapter is read and checked
against the base (the same pre-flight ``generate`` runs) the first time a request names it, and its
factors stay in memory until more than ``max_loaded`` are loaded: then the least recently used one
that no running request holds is evicted (it loads again on its next use). Runtime loading takes
only folders under the loras folder or hub ids (downloaded there through the download store, as
``lorakit download`` does), never a path from the network elsewhere on the machine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.hub.resolve import hub_ref
from lorakit.serving.api_errors import ApiError, bad
from lorakit.serving.mixes import Mix
from lorakit.store.adapters import CONFIG_FILE, AdapterInfo, read_adapter
from lorakit.store.home import folder_name_for_repo
from lorakit.store.lora_spec import REPO_ID


@dataclass
class Servable:
    name: str
    path: Path
    default_weight: float = 1.0
    created: int = 0


@dataclass
class Loaded:
    info: AdapterInfo
    last_used: float
    holders: int = 0


class AdapterPool:
    """Names -> folders, lazily loaded factors, LRU eviction; ``check(info)`` is the pre-flight,
    ``attach(name, path, info)``/``detach(name)`` put factors into and out of the engine."""

    def __init__(self, loras_dir: Path | None, max_loaded: int, check, attach, detach, preloaded=()):
        self.loras_dir = Path(loras_dir) if loras_dir else None
        self.max_loaded = max_loaded
        self._check, self._attach, self._detach = check, attach, detach
        self.lock = threading.RLock()
        now = int(time.time())
        self.added: dict[str, Servable] = {name: Servable(name, Path(path), weight, now) for name, path, weight in preloaded}
        self.withdrawn: set[str] = set()
        self.loaded: dict[str, Loaded] = {}

    # ---- names -----------------------------------------------------------------------------------
    def _scanned(self) -> dict[str, Servable]:
        found: dict[str, Servable] = {}
        if self.loras_dir is not None and self.loras_dir.is_dir():
            for folder in sorted(self.loras_dir.iterdir()):
                if (folder / CONFIG_FILE).is_file():
                    found[folder.name] = Servable(folder.name, folder, 1.0, int(folder.stat().st_mtime))
        return found

    def servable(self) -> dict[str, Servable]:
        with self.lock:
            names = {name: item for name, item in self._scanned().items() if name not in self.withdrawn}
            names.update(self.added)
            return names

    def lookup(self, name: str) -> Servable | None:
        with self.lock:
            if name in self.added:
                return self.added[name]
            if name in self.withdrawn or self.loras_dir is None:
                return None
            for folder_name in (name, folder_name_for_repo(name)):
                folder = self.loras_dir / folder_name
                if "/" not in folder_name and (folder / CONFIG_FILE).is_file():
                    return Servable(name, folder, 1.0, int(folder.stat().st_mtime))
            return None

    def default_weight(self, name: str) -> float:
        found = self.lookup(name)
        return found.default_weight if found else 1.0

    # ---- loading ---------------------------------------------------------------------------------
    def _read_checked(self, name: str, path: Path) -> AdapterInfo:
        try:
            info = read_adapter(path)
            self._check(info)
        except LorakitError as error:
            raise ApiError(400, f"adapter '{name}' cannot be served: {error.one_line()}", "model", "adapter_does_not_fit") from None
        return info

    def acquire(self, mix: Mix, param: str = "model") -> None:
        """Make every adapter of ``mix`` resident and hold it until :meth:`release`."""
        with self.lock:
            for name, _ in mix:
                if self.lookup(name) is None:
                    raise ApiError(404, f"the model '{name}' does not exist", param, "model_not_found")
            taken = []
            try:
                for name, _ in mix:
                    self._ensure(name)
                    self.loaded[name].holders += 1
                    taken.append(name)
            except BaseException:
                self.release(tuple((n, 0.0) for n in taken))
                raise
            self._evict()

    def release(self, mix: Mix) -> None:
        with self.lock:
            for name, _ in mix:
                entry = self.loaded.get(name)
                if entry is not None:
                    entry.holders = max(0, entry.holders - 1)
                    entry.last_used = time.monotonic()
                    if name in self.withdrawn and entry.holders == 0:
                        self._drop(name)
            self._evict()

    def _ensure(self, name: str) -> None:
        entry = self.loaded.get(name)
        if entry is not None:
            entry.last_used = time.monotonic()
            return
        servable = self.lookup(name)
        info = self._read_checked(name, servable.path)
        self._attach(name, servable.path, info)
        self.loaded[name] = Loaded(info, time.monotonic())

    def _drop(self, name: str) -> None:
        self.loaded.pop(name, None)
        self._detach(name)

    def _evict(self) -> None:
        while len(self.loaded) > self.max_loaded:
            idle = [(entry.last_used, name) for name, entry in self.loaded.items() if entry.holders == 0]
            if not idle:
                return  # every resident adapter is in use; evicted once released
            self._drop(min(idle)[1])

    # ---- runtime management (the load/unload endpoints) ----------------------------------------------
    def resolve_runtime_path(self, lora_path: str) -> Path:
        """A folder under the loras folder, or a hub id downloaded there; nothing else on the machine."""
        if self.loras_dir is None:
            raise bad("this server has no loras folder to load adapters from", "lora_path")
        root = self.loras_dir.resolve()
        text = lora_path.strip()
        candidates = [Path(text).expanduser()]
        if not Path(text).is_absolute():
            candidates = [root / text]
            if REPO_ID.match(text):
                candidates.insert(0, root / folder_name_for_repo(text))
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved != root and root in resolved.parents and (resolved / CONFIG_FILE).is_file():
                return resolved
        if hub_ref(text) is not None:
            return self._fetch(text)
        raise bad(f"lora_path '{text}' is not an adapter folder under the server's loras folder; "
                  "only adapters in $LORAKIT_HOME/loras (or hub ids downloaded there) can be loaded at runtime", "lora_path")

    def _fetch(self, text: str) -> Path:
        """A hub id not downloaded yet goes through the download store (checksums, one copy on disk)."""
        from lorakit.hub.resolve import resolve_lora

        try:
            path = Path(resolve_lora(text, quiet=True)).resolve()
        except LorakitError as error:
            raise ApiError(404, f"the hub adapter '{text}' is not available: {error.one_line()}", "lora_path", "adapter_not_found") from None
        if self.loras_dir.resolve() not in path.parents:
            raise bad(f"the hub adapter '{text}' was stored outside the server's loras folder", "lora_path")
        return path

    def add(self, name: str, lora_path: str) -> Servable:
        path = self.resolve_runtime_path(lora_path)
        with self.lock:
            if name in self.added or (name not in self.withdrawn and name in self._scanned() and self._scanned()[name].path.resolve() != path):
                raise bad(f"an adapter named '{name}' is already being served", "lora_name")
            info = self._read_checked(name, path)
            if name in self.loaded:
                self._drop(name)
            self._attach(name, path, info)
            self.loaded[name] = Loaded(info, time.monotonic())
            self.withdrawn.discard(name)
            self.added[name] = Servable(name, path, 1.0, int(time.time()))
            self._evict()
            return self.added[name]

    def remove(self, name: str) -> None:
        with self.lock:
            if self.lookup(name) is None:
                raise ApiError(404, f"no adapter named '{name}' is being served", "lora_name", "model_not_found")
            self.added.pop(name, None)
            self.withdrawn.add(name)
            entry = self.loaded.get(name)
            if entry is not None and entry.holders == 0:
                self._drop(name)
