"""A site folder that makes lorakit's resolver a vLLM plugin without installing anything into vLLM's venv.

vLLM finds general plugins through the entry-point group ``vllm.general_plugins``;
``importlib.metadata`` reads entry points from any ``*.dist-info`` folder on ``sys.path``. So the
engine writes the resolver modules as the package ``lorakit_vllm_resolver`` plus a minimal dist-info
next to it, and puts that folder on vLLM's ``PYTHONPATH``: the resolver always matches this plugin's
version and needs no ``pip install`` in vLLM's venv.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lorakit_vllm import __version__

PACKAGE = "lorakit_vllm_resolver"
SOURCES = Path(__file__).resolve().parent / "vllm_side"
ENTRY_POINT = f"lorakit = {PACKAGE}.resolver:register"


def write_site(site_dir: Path) -> Path:
    """(Re)write ``site_dir`` with the resolver package and its entry point; returns the folder."""
    site_dir.mkdir(parents=True, exist_ok=True)
    package = site_dir / PACKAGE
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir()
    for source in sorted(SOURCES.glob("*.py")):
        shutil.copyfile(source, package / source.name)
    for stale in site_dir.glob(f"{PACKAGE}-*.dist-info"):
        shutil.rmtree(stale, ignore_errors=True)
    info = site_dir / f"{PACKAGE}-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {__version__}\n")
    (info / "entry_points.txt").write_text(f"[vllm.general_plugins]\n{ENTRY_POINT}\n")
    return site_dir
