"""Publishing an adapter: its safetensors, its lorakit records and a generated model card, in one commit.

The base model is named by its hub id (never a local path): from ``--base-model``, from the adapter's
config when that already is a hub id, or from the ``lorakit_download.json`` of the local base folder
it was trained on. The uploaded ``adapter_config.json`` says that id and revision, so PEFT's
``PeftModel.from_pretrained`` and the hub's model tree find the base. huggingface_hub does the
transfer (``create_repo``, ``create_branch``, ``create_commit``: preupload, LFS or Xet, commit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import AdapterError, LorakitError, UsageError
from lorakit.hub.integrity import hub_origin
from lorakit.hub.model_card import CARD_FILE, CardFacts, render_card
from lorakit.hub.repo_ref import RepoRef, parse_repo_ref
from lorakit.store.adapters import CONFIG_FILE, SAFETENSORS_FILE, read_adapter_config

WEIGHTS_FILE = SAFETENSORS_FILE
# What lorakit keeps beside an adapter, plus the tokenizer files some adapters carry. Never a pickle.
EXTRA_FILES = ("training_parameters.json", "training_log.json", "prompt_format.json", "lorakit_base.json", "loss_curve.png", "lorakit_convert.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass
class UploadPlan:
    folder: Path
    name: str
    repo: RepoRef
    base_model: str
    base_revision: str | None
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(len(data) for data in self.files.values())


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).expanduser().exists()


def base_of(config: dict, flag: str | None) -> tuple[str, str | None]:
    """The base's hub id and revision, or a UsageError saying to pass ``--base-model``."""
    if flag:
        ref = parse_repo_ref(flag)
        return ref.repo_id, ref.revision if ref.revision_given else None
    recorded = str(config.get("base_model_name_or_path") or "")
    if recorded and _looks_like_hub_id(recorded):
        return recorded, config.get("revision") or None
    origin = hub_origin(Path(recorded).expanduser()) if recorded else None
    if origin:
        return origin
    where = f"the local path '{recorded}'" if recorded else "not recorded"
    raise UsageError(f"the adapter's base model is {where}, which nobody else can download", "pass --base-model ORG/NAME (the hub id it was trained on)")


def plan_upload(folder: Path, repo: str, branch: str | None, base_model: str | None, eval_rows=()) -> UploadPlan:
    folder = Path(folder)
    ref = parse_repo_ref(repo, branch)
    config = read_adapter_config(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        if (folder / "adapter_model.bin").is_file():
            raise AdapterError(
                f"'{folder}' holds only a pickle adapter_model.bin: upload publishes safetensors only",
                f"convert it first: lorakit convert {folder.name} --allow-pickle",
            )
        raise AdapterError(f"'{folder}' has no {WEIGHTS_FILE}")
    base_id, base_revision = base_of(config, base_model)
    published = {**config, "base_model_name_or_path": base_id}
    if base_revision:
        published["revision"] = base_revision
    else:
        published.pop("revision", None)
    plan = UploadPlan(folder, folder.name, ref, base_id, base_revision)
    plan.files[CONFIG_FILE] = (json.dumps(published, indent=2, sort_keys=True) + "\n").encode()
    plan.files[WEIGHTS_FILE] = (folder / WEIGHTS_FILE).read_bytes()
    for name in EXTRA_FILES:
        if (folder / name).is_file():
            plan.files[name] = (folder / name).read_bytes()
    facts = CardFacts(folder.name, base_id, base_revision, repo_id=ref.repo_id, eval_rows=list(eval_rows))
    plan.files[CARD_FILE] = render_card(folder, facts).encode()
    return plan


@dataclass
class UploadResult:
    repo_id: str
    branch: str
    commit: str
    url: str
    files: list[str]
    private: bool


def upload(plan: UploadPlan, settings, private: bool, message: str | None = None) -> UploadResult:
    """Create the repository (and branch) if needed and push every planned file in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from lorakit import __version__

    if not settings.token:
        raise LorakitError("uploading needs a hub token with write access", "set HF_TOKEN (or run `hf auth login`), or pass --token")
    if settings.offline:
        raise LorakitError("HF_HUB_OFFLINE=1 forbids uploading", "unset HF_HUB_OFFLINE to upload")
    api = HfApi(endpoint=settings.endpoint, token=settings.token, library_name="lorakit", library_version=__version__)
    api.create_repo(plan.repo.repo_id, private=private, exist_ok=True)
    branch = plan.repo.revision
    if plan.repo.revision_given and branch != "main":
        api.create_branch(plan.repo.repo_id, branch=branch, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in sorted(plan.files.items())]
    info = api.create_commit(
        plan.repo.repo_id, operations, revision=branch,
        commit_message=message or f"Upload {plan.name} (LoRA for {plan.base_model}) with lorakit",
    )
    return UploadResult(plan.repo.repo_id, branch, info.oid, info.commit_url, sorted(plan.files), private)
