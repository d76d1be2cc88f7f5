"""``ORG/NAME[:REVISION]`` (or a hub URL) -> a validated repository id and revision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from lorakit.errors import UsageError
from lorakit.store import home

DEFAULT_REVISION = "main"

# The hub's own rules (huggingface_hub.utils.validate_repo_id): letters, digits, '-', '_', '.';
# no '--' or '..'; no leading/trailing '-' or '.'; names of at most 96 characters.
_PART = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RepoRef:
    repo_id: str
    revision: str
    revision_given: bool  # False when the default branch was implied

    @property
    def is_commit(self) -> bool:
        return bool(_COMMIT.match(self.revision))

    def folder_name(self) -> str:
        """``org_name``, plus ``_revision`` when one was asked for (text-generation-webui's naming)."""
        name = home.folder_name_for_repo(self.repo_id)
        if self.revision_given and self.revision != DEFAULT_REVISION:
            name += "_" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.revision)
        return name

    def display(self) -> str:
        return self.repo_id if not self.revision_given else f"{self.repo_id}@{self.revision}"


def _why_malformed(repo_id: str) -> str | None:
    parts = repo_id.split("/")
    if not repo_id:
        return "it is empty"
    if len(parts) > 2:
        return "it has more than one '/'"
    if any(not part for part in parts):
        return "the organisation or the name is empty"
    for part in parts:
        if len(part) > 96:
            return f"'{part[:20]}...' is longer than 96 characters"
        if not _PART.match(part):
            return f"'{part}' may only hold letters, digits, '-', '_' and '.', and cannot start or end with '-' or '.'"
        if "--" in part or ".." in part:
            return f"'{part}' contains '--' or '..'"
    if repo_id.endswith(".git"):
        return "it ends with '.git'"
    return None


def _from_url(text: str) -> tuple[str, str | None]:
    """``https://host/ORG/NAME[/tree/REV | /resolve/REV/...]`` -> (``ORG/NAME``, REV)."""
    parts = [unquote(p) for p in urlsplit(text).path.split("/") if p]
    if parts[:1] == ["models"]:
        parts = parts[1:]
    if len(parts) >= 4 and parts[2] in ("tree", "blob", "resolve"):
        return "/".join(parts[:2]), parts[3]
    return "/".join(parts[:2]) if len(parts) >= 2 else "/".join(parts), None


def parse_repo_ref(text: str, revision: str | None = None) -> RepoRef:
    """Validate ``text``; a ``:REVISION`` suffix and ``--revision`` must agree when both are given."""
    raw = (text or "").strip()
    inline: str | None = None
    if raw.startswith(("http://", "https://")):
        repo_id, inline = _from_url(raw)
    else:
        repo_id, sep, tail = raw.partition(":")
        if sep:
            if not tail:
                raise UsageError(f"repository '{raw}' ends with ':' but names no revision", "write ORG/NAME or ORG/NAME:BRANCH")
            inline = tail
    why = _why_malformed(repo_id)
    if why:
        raise UsageError(f"'{raw}' is not a valid repository id: {why}", "write ORG/NAME or ORG/NAME:BRANCH, e.g. tloen/alpaca-lora-7b")
    if inline and revision and inline != revision:
        raise UsageError(f"two revisions given: '{inline}' (after ':') and --revision '{revision}'", "give only one")
    chosen = revision or inline
    if chosen is not None and (not chosen.strip() or any(c.isspace() for c in chosen) or ".." in chosen):
        raise UsageError(f"'{chosen}' is not a valid revision", "give a branch, tag or 40-character commit hash")
    return RepoRef(repo_id, chosen or DEFAULT_REVISION, chosen is not None)
