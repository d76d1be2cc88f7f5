"""The terminal: an 80-column training line with an early ETA, results on stdout, no third-party noise,
and an ``apply`` that says what it checked."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIELDS = {"epoch": 0.45, "loss": "2.3456", "lr": "3.0e-04", "tps": "182", "elapsed": 83.0, "eta": 902.0}


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
@pytest.mark.parametrize("step, total, tps, hours", [(3, 16, "17", 0), (1234, 10000, "12,345", 1), (0, 1, "-", 0)])
def test_the_progress_line_always_fits(width, step, total, tps, hours):
    from lorakit.training.progress import status_line

    fields = {**FIELDS, "tps": tps, "elapsed": 3600.0 * hours + 5, "eta": 3600.0 * hours + 7}
    line = status_line(step, total, fields, width, bar=True)
    assert len(line) < width or width < 50, line
    assert line.startswith(f"step {step}/{total}") and "loss" in line and "ETA" in line
    if width >= 100 or (width == 80 and not hours):  # at 80 columns only an hours-long run of 10k steps drops the epoch
        assert "epoch 0.45" in line and "lr 3.0e-04" in line and f"{tps} tok/s" in line


def test_the_live_line_at_80_columns_shows_an_eta_from_the_first_step():
    from rich.console import Console

    from lorakit.training.progress import TrainingProgress

    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=True, color_system=None)
    with TrainingProgress(160, 0, console=console) as progress:
        progress.update(1, 0.01, 3.2, 3e-4, 180.0)
        line = progress._render().plain
    assert len(line) < 80 and "ETA -:--" not in line and "ETA 0:" in line, line
    assert "step 1/160" in line and "loss 3.2000" in line and "180 tok/s" in line
    shown = [row for row in buffer.getvalue().replace("\r", "\n").splitlines() if "step" in row]
    assert shown and all(len(_plain(row)) <= 80 for row in shown), shown


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_the_plain_lines_fit_and_carry_the_eta():
    from rich.console import Console

    from lorakit.training.progress import TrainingProgress

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    with TrainingProgress(4, 0, console=console) as progress:
        for step in range(1, 5):
            progress.update(step, step / 4, 1.0 / step, 1e-3, 50.0)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4 and all(len(line) < 80 for line in lines), lines
    assert "ETA" in lines[0] and "-:--" not in lines[0] and lines[-1].endswith("ETA 0:00")


def test_known_warnings_are_filtered_one_by_one_and_others_still_show():
    from lorakit.output.quiet import quiet_logs

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        quiet_logs()
        warnings.warn("The given NumPy array is not writable, and PyTorch does not support non-writable tensors.", UserWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("Failed to load CPU gemm_4bit_forward from kernels-community", UserWarning)
        warnings.warn("something new and important", UserWarning)
    assert [str(w.message) for w in seen] == ["something new and important"]


def test_library_loggers_keep_their_warnings_off_the_terminal():
    import logging

    from lorakit.output.quiet import quiet_logs

    quiet_logs()
    for name in ("torchao", "bitsandbytes.backends.cpu.ops", "transformers.modeling_utils", "torch.utils._pytree"):
        assert not logging.getLogger(name).isEnabledFor(logging.WARNING), name


NOISE = ("Warning", "warn(", "Failed to load", "kernels-community", "GPT-QModel", "GPTQModel", "_C_mxfp8", "not writable",
         "is_gradient_checkpointing", "Traceback", "W1", "it/s]")


def test_no_third_party_noise_reaches_a_user(tmp_path, tiny_model_dir, tiny_adapter_dir):
    """One real process runs train, generate, apply (8-bit), eval and merge --format gguf-lora through the
    CLI, with its stderr and stdout at the file-descriptor level: nothing but lorakit's own lines."""
    (tmp_path / "rows.json").write_text('[{"instruction": "Say 1.", "output": "1."}, {"instruction": "Say 2.", "output": "2."}]')
    (tmp_path / "text.txt").write_text("words and more words " * 40)
    commands = [
        ["train", str(tiny_model_dir), "--dataset", str(tmp_path / "rows.json"), "--output", str(tmp_path / "trained"),
         "--epochs", "1", "--batch-size", "2", "--micro-batch-size", "2", "--warmup-steps", "0", "--rank", "2", "--add-eos"],
        ["generate", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--prompt", "hi", "--max-new-tokens", "3", "--greedy"],
        ["apply", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--load-in-8bit", "--no-probe"],
        ["eval", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--dataset", str(tmp_path / "text.txt"), "--max-length", "32"],
        ["merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--format", "gguf-lora", "--output", str(tmp_path / "a.gguf")],
    ]
    script = textwrap.dedent(f"""
        import sys
        from lorakit.cli import main
        for argv in {commands!r}:
            print("=== " + argv[0], file=sys.stderr, flush=True)
            try:
                main(argv)
            except SystemExit as done:
                if done.code:
                    print(f"exit {{done.code}}", file=sys.stderr, flush=True)
    """)
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LORAKIT_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0 and "exit " not in done.stderr, done.stderr
    noisy = [line for line in (done.stderr + done.stdout).splitlines() if any(mark in line for mark in NOISE)]
    assert noisy == [], "\n".join(noisy)


def test_apply_says_what_it_checked_and_that_nothing_stays_loaded(run_cli, tiny_model_dir, tiny_adapter_dir):
    code, out, err = run_cli("apply", str(tiny_model_dir), "--lora", str(tiny_adapter_dir))
    assert code == 0, err
    assert f"Checked: tiny-lora:1 fits {tiny_model_dir.name}, the 'transformers' loader attached it, and measured what it changes." in err
    assert "Nothing stays loaded once apply exits: add -i for a session" in err
    code, _, err = run_cli("apply", str(tiny_model_dir))
    assert f"Checked: {tiny_model_dir.name} loads with the 'transformers' loader (no LoRA given)." in err


def test_eval_results_go_to_stdout_and_progress_to_stderr(run_cli, tiny_model_dir, tmp_path):
    (tmp_path / "text.txt").write_text("the lighthouse keeper counted gulls " * 30)
    code, out, err = run_cli("eval", str(tiny_model_dir), "--dataset", str(tmp_path / "text.txt"), "--max-length", "32")
    assert code == 0, err
    assert "Perplexity on text.txt" in out and "delta vs base" in out  # the results: data, on stdout
    assert "Loading" in err and "Perplexity on" not in err and "delta vs base" not in err


def test_benchmark_processes_filter_the_same_noise(tmp_path):
    """A benchmark's child process runs reference code (PEFT, transformers) outside the CLI: the
    harness sets up the same filters, so `python -m benchmarks` output carries none of the known noise."""
    (tmp_path / "noisy_reference.py").write_text(textwrap.dedent("""
        import logging, warnings
        def run():
            warnings.warn("The given NumPy array is not writable, and PyTorch does not support non-writable tensors.", UserWarning)
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
            logging.getLogger("torchao").warning("Failed to load /x/torchao/_C_mxfp8.so: undefined symbol")
            logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward from kernels-community")
            warnings.warn("a new warning nobody filtered", UserWarning)
            return 1
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("LORAKIT_DEBUG", None)
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "_call", "noisy_reference:run", "[]", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0 and out.is_file(), done.stderr
    noise = [line for line in done.stderr.splitlines() if line.strip() and "a new warning nobody filtered" not in line and "warnings.warn" not in line]
    assert noise == [] and "a new warning nobody filtered" in done.stderr, done.stderr
