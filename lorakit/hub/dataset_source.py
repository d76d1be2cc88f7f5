"""``--dataset`` sources other than a JSON/JSONL file: local ``.parquet`` / ``.csv``, and hub datasets.

Every source becomes one JSON Lines file of rows, so training and evaluation read it through the
same rows reader and the same formatter rules whatever it came from:

- ``.parquet`` (pyarrow) and ``.csv`` (every value a string, as typed) are written once into
  ``$LORAKIT_HOME/cache/datasets``, keyed by the file's sha256;
- a hub id ``ORG/NAME[@CONFIG][:SPLIT]`` (split ``train`` by default) is fetched with
  huggingface_hub's ``snapshot_download`` into the standard HF cache (data files only: parquet,
  CSV, JSON), and ``datasets`` decides which files make that config and split, from the
  repository's README configs or its file names, exactly as ``load_dataset`` would. Offline
  (``HF_HUB_OFFLINE=1``) a cached snapshot is used; without one, one line says so.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError, UsageError
from lorakit.store import home
from lorakit.store.atomic import atomic_write_text
from lorakit.store.file_hash import file_sha256

TABLE_SUFFIXES = (".parquet", ".csv")
DATA_PATTERNS = ["*.parquet", "**/*.parquet", "*.csv", "**/*.csv", "*.json", "**/*.json", "*.jsonl", "**/*.jsonl",
                 "*.ndjson", "**/*.ndjson", "README.md", "*.yaml"]
_HUB_DATASET = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?:@(?P<config>[\w.-]+))?(?::(?P<split>[\w.\-\[\]%:]+))?$")


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    config: str | None
    split: str

    def display(self) -> str:
        return self.repo_id + (f"@{self.config}" if self.config else "") + f":{self.split}"


def parse_hub_dataset(text: str) -> HubDataset | None:
    """``ORG/NAME[@CONFIG][:SPLIT]`` -> its parts; None for anything that is not shaped like one."""
    if not text or text.startswith((".", "/", "~")) or Path(text).suffix.lower() in (".json", ".jsonl", ".ndjson", ".txt", *TABLE_SUFFIXES):
        return None
    match = _HUB_DATASET.match(text.strip())
    if not match or Path(match["repo"].split("/")[0]).is_dir():
        return None  # no such shape, or a path into a local folder that is simply missing a file
    return HubDataset(match["repo"], match["config"], match["split"] or "train")


def dataset_rows_file(text: str) -> Path | None:
    """A JSON/JSONL file holding the rows ``text`` names, or None when ``text`` names no known source."""
    path = Path(text).expanduser()
    if path.is_file():
        return _table_file(path) if path.suffix.lower() in TABLE_SUFFIXES else path
    ref = parse_hub_dataset(text)
    return _hub_file(ref) if ref is not None else None


def _cache_root() -> Path:
    return home.cache_dir() / "datasets"


def read_table(path: Path) -> list[dict]:
    """The rows of a ``.parquet`` or ``.csv`` file (a damaged file is one line)."""
    what = f"dataset {path}"
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                return [dict(row) for row in csv.DictReader(handle)]
        except (UnicodeDecodeError, csv.Error) as error:
            raise LorakitError(f"{what} is not a readable UTF-8 CSV file ({error})") from None
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except ImportError:
        raise LorakitError("reading .parquet needs pyarrow", "pip install 'lorakit[datasets]'") from None
    except Exception as error:  # noqa: BLE001 - pyarrow's errors vary by version: one line either way
        raise LorakitError(f"{what} is not a readable parquet file ({' '.join(str(error).split())[:160]})") from None


def _write_jsonl(target: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    atomic_write_text(target, text)
    return target


def _table_file(path: Path) -> Path:
    target = _cache_root() / "local" / f"{file_sha256(path)}.jsonl"
    if target.is_file():
        return target
    return _write_jsonl(target, read_table(path))


def _rows_of(files: list[Path]) -> list[dict]:
    from lorakit.store.rows import read_rows

    rows: list[dict] = []
    for file in files:
        if file.suffix.lower() in TABLE_SUFFIXES:
            rows += read_table(file)
        else:
            rows += [row for _label, row in read_rows(file)]
    return rows


def _snapshot(ref: HubDataset) -> Path:
    from huggingface_hub import snapshot_download

    from lorakit import __version__
    from lorakit.hub.hub_errors import ErrorContext, scrubbed, transport_errors, translate
    from lorakit.hub.settings import hub_runtime, read_settings
    from lorakit.output.console import info

    settings = read_settings()
    context = ErrorContext(ref.repo_id, "main", settings.endpoint, bool(settings.token))
    if not settings.offline:
        info(f"dataset {ref.display()}: fetching its data files from {settings.endpoint} (cached afterwards)")
    try:
        with hub_runtime(settings):
            folder = snapshot_download(
                ref.repo_id, repo_type="dataset", cache_dir=str(settings.cache_dir), endpoint=settings.endpoint,
                token=settings.token_arg, allow_patterns=DATA_PATTERNS, local_files_only=settings.offline,
                library_name="lorakit", library_version=__version__,
            )
    except Exception as error:  # noqa: BLE001 - every failure is one line, the token scrubbed
        from huggingface_hub.errors import LocalEntryNotFoundError

        if isinstance(error, LocalEntryNotFoundError) or isinstance(error, transport_errors()):
            why = "HF_HUB_OFFLINE=1 forbids fetching it" if settings.offline else f"the hub at {settings.endpoint} cannot be reached"
            raise scrubbed(LorakitError(
                f"dataset {ref.repo_id} is not in the Hugging Face cache and {why}",
                "run the command once with the hub reachable (it is cached then), or pass a local file",
            ), settings.secrets) from None
        raise scrubbed(translate(error, context), settings.secrets) from None
    return Path(folder)


def _split_files(folder: Path, ref: HubDataset) -> list[Path]:
    """The data files of ``ref``'s config and split, as ``datasets`` reads the repository's layout."""
    from lorakit.output.quiet import quiet_libraries

    quiet_libraries()
    try:
        import datasets
    except ImportError:
        raise LorakitError("hub datasets need the datasets package", "pip install 'lorakit[datasets]'") from None
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        builder = datasets.load_dataset_builder(str(folder), name=ref.config, cache_dir=str(_cache_root() / "builders"))
    except ValueError as error:
        raise UsageError(f"dataset {ref.display()}: {' '.join(str(error).split())[:240]}", "name a config with ORG/NAME@CONFIG") from None
    except Exception as error:  # noqa: BLE001
        raise LorakitError(f"dataset {ref.display()} has no data files lorakit can read ({type(error).__name__}: {' '.join(str(error).split())[:160]})",
                           "lorakit reads parquet, CSV and JSON/JSONL data files") from None
    data_files = builder.config.data_files or {}
    if ref.split not in data_files:
        splits = ", ".join(sorted(data_files)) or "none"
        raise UsageError(f"dataset {ref.repo_id}{'@' + ref.config if ref.config else ''} has no split '{ref.split}' (splits: {splits})",
                         f"write {ref.repo_id}:SPLIT, e.g. {ref.repo_id}:{sorted(data_files)[0] if data_files else 'train'}")
    return [Path(str(file)) for file in data_files[ref.split]]


_FETCHED: dict[HubDataset, Path] = {}  # one hub round trip per process, however often the rows are read


def _hub_file(ref: HubDataset) -> Path:
    if ref in _FETCHED and _FETCHED[ref].is_file():
        return _FETCHED[ref]
    _FETCHED[ref] = path = _fetch_hub_file(ref)
    return path


def _fetch_hub_file(ref: HubDataset) -> Path:
    folder = _snapshot(ref)
    target = _cache_root() / "hub" / ref.repo_id.replace("/", "--") / folder.name / f"{ref.config or 'default'}--{ref.split}.jsonl"
    if target.is_file():
        return target
    rows = _rows_of(_split_files(folder, ref))
    if not rows:
        raise LorakitError(f"dataset {ref.display()} has no rows")
    return _write_jsonl(target, rows)
