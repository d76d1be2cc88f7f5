"""``lorakit upload``: publish an adapter with a generated model card to the Hugging Face hub."""

from __future__ import annotations

import json

import click

from lorakit.errors import LorakitError


@click.command()
@click.argument("name", metavar="NAME")
@click.argument("repo", metavar="ORG/REPO")
@click.option("--private", is_flag=True, help="Create the repository as private (an existing one keeps its visibility).")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (created from main if missing; default: main).")
@click.option("--base-model", metavar="ORG/NAME[:REVISION]", help="Hub id of the base model (needed when the adapter records only a local path).")
@click.option("--message", metavar="TEXT", help="Commit message.")
@click.option("--token", metavar="TOKEN", help="Hub token with write access (prefer HF_TOKEN: command lines are visible to other users).")
@click.option("--json", "as_json", is_flag=True, help="Print the commit (repo, branch, commit id, url, files) as JSON on stdout.")
def upload(name, repo, private, revision, base_model, message, token, as_json):
    """Upload the adapter NAME (a folder under $LORAKIT_HOME/loras, or a path) to ORG/REPO.

    \b
    Sends adapter_model.safetensors (never a pickle), adapter_config.json naming the base by its hub
    id and revision, lorakit's training records, and a generated README.md model card (base model,
    dataset, training parameters, loss curve, eval results, how to use it from lorakit, PEFT and
    llama.cpp). The token comes from HF_TOKEN, `hf auth login` or --token and is never printed.

    \b
    Examples:
      lorakit upload facts myname/facts-lora --base-model HuggingFaceTB/SmolLM2-135M-Instruct
      lorakit upload facts myname/facts-lora --revision v2 --private
    """
    from lorakit.evaluation.records import rows_for_adapter
    from lorakit.hub.hub_errors import ErrorContext, scrubbed, translate
    from lorakit.hub.progress import human_size
    from lorakit.hub.settings import hub_runtime, read_settings
    from lorakit.hub.upload import plan_upload
    from lorakit.hub.upload import upload as push
    from lorakit.output.console import err_console
    from lorakit.store.lora_spec import resolve_lora_path

    folder = resolve_lora_path(name)
    plan = plan_upload(folder, repo, revision, base_model, rows_for_adapter(folder))
    settings = read_settings(token)
    console = err_console()
    context = ErrorContext(plan.repo.repo_id, plan.repo.revision, settings.endpoint, bool(settings.token))
    console.print(
        f"Uploading {plan.name} ({len(plan.files)} files, {human_size(plan.total_size)}, base {plan.base_model}) "
        f"to {plan.repo.repo_id} branch {plan.repo.revision}...", markup=False,
    )
    try:
        with hub_runtime(settings):
            result = push(plan, settings, private, message)
    except LorakitError as error:
        raise scrubbed(error, settings.secrets)
    except Exception as error:  # library and OS errors become one line, token scrubbed
        raise scrubbed(translate(error, context), settings.secrets) from error
    console.print(f"Uploaded to {result.url} (commit {result.commit[:12]}): {', '.join(result.files)}", markup=False)
    lora = result.repo_id + (f":{result.branch}" if plan.repo.revision_given and result.branch != "main" else "")
    console.print(f"Next: lorakit generate {plan.base_model} --lora {lora} --prompt 'Hello'", markup=False)
    if as_json:
        click.echo(json.dumps({"repo_id": result.repo_id, "branch": result.branch, "commit": result.commit, "url": result.url,
                               "files": result.files, "base_model": plan.base_model, "base_revision": plan.base_revision}, indent=2))
