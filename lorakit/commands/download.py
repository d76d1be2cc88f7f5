"""``lorakit download``: adapters and models from the Hugging Face hub (or a mirror set with HF_ENDPOINT)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from lorakit.errors import LorakitError
from lorakit.store import home


@click.command()
@click.argument("repo", metavar="ORG/NAME[:REVISION]")
@click.option("--revision", help="Branch, tag or commit to fetch (default: main); same as ORG/NAME:REVISION.")
@click.option("--include", multiple=True, metavar="PATTERN", help="Fetch only files matching this glob (repeatable); turns off the automatic skipping of pickle files.")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Skip files matching this glob (repeatable).")
@click.option("--output", type=click.Path(path_type=Path), help="Folder to put the files in (default: $LORAKIT_HOME/loras/ORG_NAME or models/ORG_NAME).")
@click.option("--token", metavar="TOKEN", help="Hub token for private or gated repositories (prefer HF_TOKEN: command lines are visible to other users).")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Files downloaded in parallel.")
@click.option("--check", is_flag=True, help="Re-verify an existing download against its lorakit_download.json and name any changed file.")
@click.option("--force", is_flag=True, help="Replace an existing folder whose content differs.")
@click.option("--convert", is_flag=True, help="Convert a legacy adapter (adapter_model.bin, 2023 config keys) once downloaded, as `lorakit convert` does.")
@click.option("--allow-pickle", is_flag=True, help="With --convert: read adapter_model.bin (torch.load with weights_only=True).")
@click.option("--json", "as_json", is_flag=True, help="Print what was downloaded (paths, sizes, sha256) as JSON on stdout.")
def download(repo, revision, include, exclude, output, token, threads, check, force, convert, allow_pickle, as_json):
    """Download an adapter or a model from the Hugging Face hub.

    \b
    An adapter (it has adapter_config.json) lands in $LORAKIT_HOME/loras/ORG_NAME, a model in
    $LORAKIT_HOME/models/ORG_NAME. Safetensors are preferred over pickle files. Every file is checked
    against the hub's checksums and listed in lorakit_download.json beside the files.

    \b
    Environment: HF_TOKEN, HF_ENDPOINT (a mirror), HF_HUB_OFFLINE=1 (use only the HF cache),
    HF_HOME / HF_HUB_CACHE (where the HF cache is).

    \b
    Examples:
      lorakit download tloen/alpaca-lora-7b
      lorakit download org/model:v2 --include "*.safetensors" --include "*.json"
      lorakit download tloen/alpaca-lora-7b --check
      lorakit download tloen/alpaca-lora-7b --convert --allow-pickle
    """
    from lorakit.hub.repo_ref import parse_repo_ref

    ref = parse_repo_ref(repo, revision)
    if check:
        _run_check(ref, output, threads, as_json)
        return

    from lorakit.hub.hub_errors import ErrorContext, scrubbed, translate
    from lorakit.hub.pipeline import DownloadOptions, download_repo
    from lorakit.hub.settings import hub_runtime, read_settings
    from lorakit.output.console import err_console

    settings = read_settings(token)
    options = DownloadOptions(tuple(include), tuple(exclude), output, threads, force)
    context = ErrorContext(ref.repo_id, ref.revision, settings.endpoint, bool(settings.token))
    try:
        with hub_runtime(settings):
            result = download_repo(ref, options, settings, err_console())
    except LorakitError as error:
        scrubbed(error, settings.secrets)
        raise
    except Exception as error:  # library and OS errors become one line, token scrubbed
        raise scrubbed(translate(error, context), settings.secrets) from error
    if convert:
        _convert(result, allow_pickle)
    _report(result, as_json)


def _convert(result, allow_pickle: bool) -> None:
    from lorakit.commands.convert import summary_lines
    from lorakit.output.console import err_console
    from lorakit.store.legacy import convert_adapter, needs_conversion

    if result.kind != "adapter":
        raise LorakitError(f"--convert: {result.ref.display()} is a model, not an adapter", "convert applies to adapters only")
    for folder in result.adapter_dirs or [result.target]:
        if needs_conversion(folder):
            for line in summary_lines(convert_adapter(folder, allow_pickle)):
                err_console().print(line, markup=False)


def _display_name(target: Path, base: Path) -> str:
    """The short name other commands accept when the folder is in its usual place, else the path."""
    try:
        if target.resolve().parent == base.resolve():
            return target.name
    except OSError:
        pass
    return str(target)


def next_command(result) -> str:
    if result.kind != "adapter":
        return f"lorakit generate {shlex.quote(_display_name(result.target, home.models_dir()))} --prompt 'Hello'"
    folder = result.adapter_dirs[0] if result.adapter_dirs else result.target
    lora = _display_name(folder, home.loras_dir()) if folder == result.target else str(folder)
    base = ""
    try:
        base = str(json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") or "")
    except (OSError, ValueError, AttributeError):
        pass
    from lorakit.store.legacy import live_base, needs_conversion

    base = live_base(base)  # a base that left the hub is named where it lives now
    line = f"lorakit generate {shlex.quote(base) + ' ' if base else ''}--lora {shlex.quote(lora)} --prompt 'Hello'"
    if needs_conversion(folder):
        line = f"lorakit convert {shlex.quote(lora)} --allow-pickle && {line}"
    return line  # a base given as a hub id is fetched by generate itself on first use


def _report(result, as_json: bool) -> None:
    from lorakit.hub.progress import human_size
    from lorakit.output.console import err_console, warn

    console = err_console()
    files = result.record.get("files", [])
    total = sum(f.get("size", 0) for f in files)
    command = next_command(result)
    for message in result.warnings:
        warn(message)
    if result.status == "up-to-date":
        console.print(f"{result.ref.display()} is already in {result.target} (commit {result.snapshot.commit[:12]}, {len(files)} files verified)", markup=False)
    else:
        cached = total - result.fetched_bytes
        source = " (all from the HF cache)" if cached == total and total else f" ({human_size(cached)} of it from the HF cache)" if cached else ""
        console.print(
            f"Downloaded {result.ref.display()} ({result.kind}, commit {result.snapshot.commit[:12]}): "
            f"{len(files)} files, {human_size(total)}{source}, checksums verified, to {result.target}",
            markup=False,
        )
        skipped = result.record.get("skipped", [])
        if skipped:
            console.print(f"Skipped {len(skipped)}: " + ", ".join(f"{s['path']} ({s['reason']})" for s in skipped[:6]), markup=False)
    console.print(f"Next: {command}", markup=False)
    if as_json:
        click.echo(json.dumps({
            "repo_id": result.ref.repo_id,
            "revision": result.ref.revision,
            "commit": result.snapshot.commit,
            "kind": result.kind,
            "status": result.status,
            "path": str(result.target.absolute()),
            "total_size": total,
            "fetched_bytes": result.fetched_bytes,
            "files": [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in files],
            "skipped": result.record.get("skipped", []),
            "warnings": result.warnings,
            "next_command": command,
        }, indent=2))


def _run_check(ref, output, threads: int, as_json: bool) -> None:
    from lorakit.hub.pipeline import check_download
    from lorakit.output.console import err_console

    folder, record, checks = check_download(ref, output, threads)
    bad = [c for c in checks if c.status in ("changed", "missing")]
    extra = [c for c in checks if c.status == "extra"]
    if as_json:
        click.echo(json.dumps({
            "repo_id": record.get("repo_id"), "commit": record.get("commit"), "path": str(folder.absolute()), "ok": not bad,
            "files": [{"path": c.path, "status": c.status, "detail": c.detail} for c in checks],
        }, indent=2))
    console = err_console()
    for c in checks:
        if c.status != "ok":
            console.print(f"  {c.status:8} {c.path}  {c.detail}", markup=False)
    if bad:
        names = ", ".join(f"{c.path} ({c.status})" for c in bad[:5])
        raise LorakitError(
            f"{len(bad)} of {len(record['files'])} files in {folder} no longer match the download: {names}",
            f"run `lorakit download {ref.repo_id}{':' + ref.revision if ref.revision_given else ''}"
            f"{' --output ' + shlex.quote(str(output)) if output else ''} --force` to fetch them again",
        )
    note = f" ({len(extra)} extra files not part of the download)" if extra else ""
    console.print(f"OK: all {len(record['files'])} files in {folder} match {record.get('repo_id')} at commit {str(record.get('commit'))[:12]}{note}", markup=False)
