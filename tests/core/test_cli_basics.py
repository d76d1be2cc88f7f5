import os
import subprocess
import sys
import time

import pytest

from lorakit.cli import CORE_COMMANDS

EXPECTED = {"download", "apply", "train", "eval", "merge", "generate", "loaders", "plugins"}


def test_help_lists_every_command(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for name in EXPECTED:
        assert f"  {name} " in out


def test_help_does_not_import_torch_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); from lorakit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'TIME', time.perf_counter() - t, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "LORAKIT_DEBUG": ""})
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stderr.splitlines() if line.startswith("HEAVY")][0]
    assert "HEAVY []" in line, line
    assert float(line.split("TIME")[1]) < 1.0


def test_console_script_help_is_instant():
    started = time.perf_counter()
    result = subprocess.run(["lorakit", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0
    assert elapsed < 1.5, f"lorakit --help took {elapsed:.2f} s"


@pytest.mark.parametrize("command", sorted(CORE_COMMANDS))
def test_every_subcommand_has_help(run_cli, command):
    code, out, err = run_cli(command, "--help")
    assert code == 0, err
    assert "Usage:" in out


def test_unknown_option_is_one_line(run_cli):
    code, out, err = run_cli("generate", "--no-such-flag")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--no-such-flag" in lines[0]


def test_unknown_command_is_one_line(run_cli):
    code, _, err = run_cli("frobnicate")
    assert code == 2
    assert len(err.strip().splitlines()) == 1


def test_unexpected_error_has_no_traceback_unless_debug(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path / "home")}
    result = subprocess.run(["lorakit", "apply", str(bad), "--lora", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
