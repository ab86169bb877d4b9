"""The Dockerfile installs what uv.lock says, runs as non-root and lints clean (no Docker here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomli

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomli.loads((REPO / "uv.lock").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def locked_version(lock: dict, name: str) -> str:
    (package,) = [p for p in lock["package"] if p["name"] == name]
    return package["version"]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments): continuation lines joined, whitespace collapsed, no comments."""
    joined = re.sub(r"\\\n", " ", text)
    rows = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), " ".join(rest.split())))
    return rows


def arg_default(text: str, name: str) -> str:
    (value,) = [
        r.split("=", 1)[1] for k, r in instructions(text) if k == "ARG" and r.startswith(f"{name}=")
    ]
    return value


def test_python_matches_the_lock(lock, dockerfile):
    assert lock["requires-python"] == "==3.10.*"
    (base,) = [rest for keyword, rest in instructions(dockerfile) if keyword == "FROM"]
    assert re.fullmatch(r"python:3\.10(\.\d+)?-slim-bookworm", base), base


def test_tensorflow_and_tfx_pins_match_the_lock(lock, dockerfile):
    tensorflow = arg_default(dockerfile, "TENSORFLOW_VERSION")
    assert tensorflow == locked_version(lock, "tensorflow") == "2.16.2"
    assert arg_default(dockerfile, "TFX_VERSION") == locked_version(lock, "tfx") == "1.16.0"
    runs = " ".join(rest for keyword, rest in instructions(dockerfile) if keyword == "RUN")
    assert '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"' in runs
    # The build fails unless the installed versions are exactly these.
    assert "assert tf.__version__ == '${TENSORFLOW_VERSION}'" in runs
    assert "assert tfx.__version__ == '${TFX_VERSION}'" in runs


def test_environment_comes_from_the_lock_into_the_venv_on_path(dockerfile):
    rows = instructions(dockerfile)
    runs = [rest for keyword, rest in rows if keyword == "RUN"]
    syncs = [r for r in runs if r.startswith("uv sync")]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    assert '--constraint /tmp/locked.txt "tensorflow[and-cuda]' in " ".join(runs)
    assert 'pip install --no-cache-dir "uv==${UV_VERSION}"' in runs  # uv from PyPI, pinned
    assert re.fullmatch(r"\d+\.\d+\.\d+", arg_default(dockerfile, "UV_VERSION"))
    env = " ".join(rest for keyword, rest in rows if keyword == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in env
    assert "PATH=/opt/venv/bin:$PATH" in env  # `python` in the KFP command is the venv's
    assert not any("TF_USE_LEGACY_KERAS" in rest for _, rest in rows)  # Keras 3, not tf-keras


def test_runs_as_a_numeric_non_root_user(dockerfile):
    users = [rest for keyword, rest in instructions(dockerfile) if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), f"hadolint not next to {sys.executable}"
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_dockerignore_keeps_local_state_out():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv/", "runs/", ".git/", "**/__pycache__/", ".pytest_cache/", ".ruff_cache/"} <= (
        ignored
    )
    copied = [
        rest.split()[:-1]
        for keyword, rest in instructions(DOCKERFILE.read_text())
        if keyword == "COPY"
    ]
    sources = {source for row in copied for source in row}
    assert sources == {"pyproject.toml", "uv.lock", "README.md", "components", "pipeline"}
    assert not sources & ignored


def test_hadolint_is_not_a_no_op(tmp_path):
    """The same linter flags what the Dockerfile avoids (unpinned pip, root user)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.10-slim-bookworm\nRUN pip install uv\nUSER root\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert {"DL3013", "DL3042", "DL3002"} <= set(re.findall(r"DL\d{4}", result.stdout))
