"""The Dockerfile installs what uv.lock says, runs as non-root and lints clean (no Docker here).

The image itself is built elsewhere (README: how far it was verified). These checks read the
Dockerfile, the lock and the wheels the lock names, so a change that would break the build
on a clean base (a package with no wheel for the image and no compiler to build it) fails here.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomli
from packaging import tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

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
    return value.strip('"')


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


# What the image's platform accepts: CPython 3.10 on glibc 2.36 x86_64 (python:3.10-slim-bookworm).
IMAGE_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
IMAGE_TAGS = set(tags.cpython_tags((3, 10), platforms=IMAGE_PLATFORMS)) | set(
    tags.compatible_tags((3, 10), "cp310", IMAGE_PLATFORMS)
)
IMAGE_MARKERS = {
    "python_version": "3.10",
    "python_full_version": "3.10.19",
    "implementation_version": "3.10.19",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "extra": "",
}


# The image serves every feature: it installs every extra of pyproject.toml.
IMAGE_EXTRAS = ("gpu", "s3", "kerashub", "openlineage")


def image_packages() -> dict[str, str]:
    """name -> version of every package the image installs from the lock (uv decides)."""
    uv = Path(sys.executable).with_name("uv")
    extras = [arg for extra in IMAGE_EXTRAS for arg in ("--extra", extra)]
    exported = subprocess.run(
        [str(uv), "export", "--frozen", "--no-dev", *extras, "--no-hashes"]
        + ["--no-emit-project", "--no-header", "--no-annotate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packages = {}
    for line in exported.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(IMAGE_MARKERS):
            (pin,) = requirement.specifier
            packages[canonicalize_name(requirement.name)] = pin.version
    return packages


def test_both_stages_use_the_python_of_the_lock(lock, dockerfile):
    assert lock["requires-python"] == "==3.10.*"
    bases = [rest for keyword, rest in instructions(dockerfile) if keyword == "FROM"]
    assert bases == ["python:3.10-slim-bookworm AS builder", "python:3.10-slim-bookworm"]


def test_tensorflow_and_tfx_pins_match_the_lock(lock, dockerfile):
    tensorflow = arg_default(dockerfile, "TENSORFLOW_VERSION")
    assert tensorflow == locked_version(lock, "tensorflow") == "2.16.2"
    assert arg_default(dockerfile, "TFX_VERSION") == locked_version(lock, "tfx") == "1.16.0"
    runs = " ".join(rest for keyword, rest in instructions(dockerfile) if keyword == "RUN")
    # The build fails unless the installed versions are exactly these.
    assert "assert tf.__version__ == '${TENSORFLOW_VERSION}'" in runs
    assert "assert tfx.__version__ == '${TFX_VERSION}'" in runs


def test_the_gpu_extra_locks_exactly_tensorflows_cuda_pins(lock):
    """The lock's nvidia wheels are the ones TF 2.16.2 names in its own `and-cuda` extra."""
    pyproject = tomli.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["gpu"] == [
        "tensorflow[and-cuda]>=2.16,<2.17"
    ]
    assert locked_version(lock, "tensorflow") == importlib.metadata.version("tensorflow")
    wanted = {}
    for text in importlib.metadata.requires("tensorflow"):
        requirement = Requirement(text)
        marker = requirement.marker
        if marker and marker.evaluate({"extra": "and-cuda"}) and not marker.evaluate({"extra": ""}):
            (pin,) = requirement.specifier
            wanted[canonicalize_name(requirement.name)] = pin.version
    assert len(wanted) == 12 and all(name.startswith("nvidia-") for name in wanted)
    installed = image_packages()
    assert {name: installed.get(name) for name in wanted} == wanted


def test_environment_comes_from_the_lock_into_the_venv_on_path(dockerfile):
    builder, runtime = stages(dockerfile)
    runs = [rest for keyword, rest in builder if keyword == "RUN"]
    syncs = [r for r in runs if r.startswith("uv sync")]
    assert len(syncs) == 2
    assert all("--frozen" in r and "--no-dev" in r for r in syncs)
    pyproject = tomli.loads((REPO / "pyproject.toml").read_text())
    assert set(IMAGE_EXTRAS) == set(pyproject["project"]["optional-dependencies"])
    for sync in syncs:
        words = sync.split()
        extras = {words[i + 1] for i, word in enumerate(words) if word == "--extra"}
        assert extras == set(IMAGE_EXTRAS), sync
    # The build checks that each extra's packages import (s3: tensorflow_io and boto3).
    assert "import tensorflow as tf, tensorflow_io, keras_hub, boto3;" in " ".join(runs)
    assert 'pip install --no-cache-dir "uv==${UV_VERSION}"' in runs  # uv from PyPI, pinned
    assert re.fullmatch(r"\d+\.\d+\.\d+", arg_default(dockerfile, "UV_VERSION"))
    env = " ".join(rest for keyword, rest in builder if keyword == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in env
    runtime_env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in runtime_env  # `python` in the KFP command is the venv's
    rows = instructions(dockerfile)
    assert not any("TF_USE_LEGACY_KERAS" in rest for _, rest in rows)  # Keras 3, not tf-keras


def test_the_runtime_stage_gets_the_venv_and_nothing_of_the_build(dockerfile):
    _, runtime = stages(dockerfile)
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runtime_runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    for build_tool in ("apt-get", "g++", "uv ", "pip "):
        assert build_tool not in runtime_runs, build_tool


def test_every_package_has_a_wheel_for_the_image_or_is_built_in_the_builder(lock, dockerfile):
    """What broke the build on a clean base: an sdist-only package and no compiler."""
    installed = image_packages()
    sdist_only = set()
    for package in lock["package"]:
        name = canonicalize_name(package["name"])
        if installed.get(name) != package.get("version"):
            continue
        wheels = [w["url"].rsplit("/", 1)[1] for w in package.get("wheels", [])]
        if not any(set(parse_wheel_filename(w)[3]) & IMAGE_TAGS for w in wheels):
            assert "sdist" in package, f"{name} has neither a wheel for the image nor an sdist"
            sdist_only.add(name)
    listed = set(arg_default(dockerfile, "BUILT_FROM_SOURCE").split())
    assert sdist_only == listed, (
        f"built from source per uv.lock: {sorted(sdist_only)}; "
        f"BUILT_FROM_SOURCE in the Dockerfile: {sorted(listed)}"
    )
    builder, _ = stages(dockerfile)
    installs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    assert '"g++=${GXX_VERSION}"' in installs  # the compiler pyfarmhash and crcmod need


def test_runs_as_a_numeric_non_root_user(dockerfile):
    _, runtime = stages(dockerfile)
    users = [rest for keyword, rest in runtime if keyword == "USER"]
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
        if keyword == "COPY" and not rest.startswith("--from=")
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
