"""The plugin host: entry points, built-ins, isolation of broken plugins, env switches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lorakit
from lorakit.loaders.registry import all_loaders
from lorakit.plugin.manager import get_plugin_manager, plugin_records

FIXTURE = Path(__file__).resolve().parents[1] / "fixture_plugin"


@pytest.fixture(scope="module")
def installed_fixture(tmp_path_factory):
    """Really install the throwaway plugin package (its own entry point) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(FIXTURE)],
        check=True, capture_output=True,
    )
    return target


def _env(site, **extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.update(extra)
    return env


def _lorakit(site, *args, **extra):
    return subprocess.run([sys.executable, "-m", "lorakit", *args], capture_output=True, text=True, env=_env(site, **extra))


def test_third_party_plugin_loader_and_command_appear(installed_fixture, tmp_path):
    listing = _lorakit(installed_fixture, "plugins", "--json", LORAKIT_HOME=str(tmp_path))
    records = json.loads(listing.stdout)
    (fixture,) = [r for r in records if r["name"] == "fixture_plugin"]
    assert fixture["package"] == "lorakit-fixture-plugin" and fixture["version"] == "0.0.1"
    assert fixture["hooks"] == ["register_commands", "register_loaders"]

    loaders = json.loads(_lorakit(installed_fixture, "loaders", "--json").stdout)
    assert {"transformers", "fixture-single"} <= {r["name"] for r in loaders}

    help_text = _lorakit(installed_fixture, "--help").stdout
    assert "fixture-hello" in help_text
    assert _lorakit(installed_fixture, "fixture-hello").stdout.strip() == "hello from fixture plugin"


def test_disable_and_load_plugins_switches(installed_fixture):
    off = _lorakit(installed_fixture, "plugins", "--json", LORAKIT_DISABLE_PLUGINS="fixture_plugin")
    assert "fixture_plugin" not in off.stdout
    none = _lorakit(installed_fixture, "plugins", "--json", LORAKIT_LOAD_PLUGINS="")
    assert json.loads(none.stdout) == []
    only = _lorakit(installed_fixture, "plugins", "--json", LORAKIT_LOAD_PLUGINS="fixture_plugin")
    assert [r["name"] for r in json.loads(only.stdout)] == ["fixture_plugin"]


def test_trace_plugins_writes_hook_calls(installed_fixture):
    result = _lorakit(installed_fixture, "loaders", "--json", LORAKIT_TRACE_PLUGINS="1")
    assert result.returncode == 0
    assert "register_loaders" in result.stderr and "fixture_plugin" in result.stderr


def test_broken_plugin_is_reported_once_and_cli_keeps_working(tmp_path):
    site = tmp_path / "site"
    package = site / "lorakit_broken"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    dist = site / "lorakit_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lorakit-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lorakit]\nbroken = lorakit_broken\n")
    result = _lorakit(site, "loaders", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)[0]["name"]
    assert result.stderr.count("plugin 'broken' failed to load") == 1
    assert "Traceback" not in result.stderr


class _RaisingPlugin:
    @lorakit.hookimpl
    def register_loaders(self, register):
        raise ValueError("cannot register")


def test_plugin_failing_at_registration_is_isolated(capsys):
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(_RaisingPlugin(), name="raiser")
    try:
        loaders = all_loaders(pm)
    finally:
        pm.unregister(name="raiser")
    assert "transformers" in loaders
    assert "plugin 'raiser' failed to run register_loaders" in capsys.readouterr().err


def test_builtins_listed_with_all(run_cli):
    code, out, _ = run_cli("plugins", "--all", "--json")
    names = {r["name"] for r in json.loads(out)}
    assert {"transformers_loader", "formatters", "autogptq_loader"} <= names
    pm = get_plugin_manager(load_entry_points=False)
    assert all(r["builtin"] for r in plugin_records(pm, include_builtin=True))


def test_loaders_json_has_capability_record(run_cli):
    code, out, _ = run_cli("loaders", "--json")
    assert code == 0
    record = {r["name"]: r for r in json.loads(out)}["transformers"]
    assert record["max_loras"] is None and record["per_lora_weights"] is True
    assert record["removal"] == "fast" and record["merge"] and record["train"]
    assert set(record["quantizations"]) == {"8bit", "4bit"} and record["available"] is True
