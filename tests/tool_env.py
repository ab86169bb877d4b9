"""Pinned side environments for tools that cannot share the project's (a current kfp, an S3 server).

Each tool has ``tests/tools/<name>.in`` (what we ask for) and ``tests/tools/<name>.txt`` (every
package pinned, made by ``uv pip compile --python 3.10 <name>.in -o <name>.txt``). ``tool_env``
builds ``.tool-envs/<name>-<hash of the .txt>/`` with ``uv`` from the ``.txt`` on the first use
and reuses it afterwards; ``uv``'s own cache makes a rebuild on the same machine offline-fast.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent / "tools"
ENVS = REPO / ".tool-envs"
_COMPLETE = ".complete"


def _uv() -> list[str]:
    uv = Path(sys.executable).with_name("uv")
    if not uv.is_file():
        raise RuntimeError(
            f"Expected uv in the project's environment (the dev group pins it). Received: {uv} "
            "missing; run `make test`, which installs it."
        )
    return [str(uv)]


def tool_env(name: str) -> Path:
    """The venv for ``tests/tools/<name>.txt``, built on first use; returns its folder."""
    pins = TOOLS / f"{name}.txt"
    if not pins.is_file():
        raise FileNotFoundError(f"Expected pinned requirements at {pins}. Received: no such file")
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()[:12]
    env = ENVS / f"{name}-{digest}"
    if (env / _COMPLETE).is_file():
        return env
    if env.exists():  # a build that was interrupted
        shutil.rmtree(env)
    ENVS.mkdir(exist_ok=True)
    # The project's own interpreter (Python 3.10) serves every tool listed.
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for command in (
        [*_uv(), "venv", "--quiet", "--python", str(base), str(env)],
        [
            *_uv(),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(env / "bin" / "python"),
            "--requirement",
            str(pins),
        ],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(
                f"Could not build the {name!r} tool environment: {' '.join(command)} exited "
                f"{result.returncode}:\n{result.stderr[-3000:]}"
            )
    (env / _COMPLETE).write_text(pins.read_text())
    return env
