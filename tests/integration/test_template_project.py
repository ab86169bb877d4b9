"""Our wheel inside a user's own TFX project: TFX's penguin template (marked e2e).

The project is TFX's penguin template copied from the installed tfx as ``tfx template copy``
does it, plus the user's files in ``template_project/`` (a pipeline in the template's own
``pipeline/`` package, a ``run_fn`` of its own in ``models/``, a runner). Our wheel, built
with ``uv build`` (from its sdist), goes into a fresh venv with the locked third-party
packages of the core install (no extras) and is installed with ``--no-deps``. Every process
runs with cwd and
``PYTHONPATH`` = the project, as TFX's container builder sets them (``WORKDIR /pipeline``,
``PYTHONPATH=/pipeline``), so the template's ``pipeline`` package comes first.

The test runs the pipeline with ``LocalDagRunner``, compiles it with ``KubeflowV2DagRunner``
plus ``apply_kubeflow_fixes``, and imports every module the compiled spec names in that
project. ``tests/test_packaging.py`` does not scan this folder: here ``pipeline`` is the
user's package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from PIL import Image

from backbone_regularizer.pipeline.kubeflow import ENTRYPOINT_MODULE
from backbone_regularizer.pipeline.lineage.queries import connect, latest_run
from tests.tool_env import _uv

REPO = Path(__file__).resolve().parents[2]
USER_FILES = Path(__file__).resolve().parent / "template_project"
PIPELINE_NAME = "backbone-template"
RUN_FN = "models.backbone_model.run_fn"
NODES = {"ImageExampleGen", "BackboneLoader", "BackboneRegularizer", "Trainer"}
EXECUTORS = {
    "ImageExampleGen": "backbone_regularizer.components.image_ingestion.executor.Executor",
    "BackboneLoader": "backbone_regularizer.components.backbone_loader.executor.Executor",
    "BackboneRegularizer": "backbone_regularizer.components.regularizer.executor.Executor",
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
}
IMAGE = "registry.example/backbone-template:1"
# What `tfx template copy --model=penguin` does (tfx/tools/cli/handler/template_handler.py),
# with the installed tfx, minus downloading the penguin CSV (no network; not used here).
COPY_TEMPLATE = """
import os, sys
from tfx.tools.cli.handler import template_handler as handler
source = os.path.join(handler._templates_src_dir(), "penguin")
handler._copy_and_replace_placeholder_dir(
    source,
    sys.argv[1],
    {os.path.join(source, path) for path in handler._IGNORE_FILE_PATHS["penguin"]},
    {
        handler._IMPORT_FROM_PACKAGE: handler._IMPORT_FROM_LOCAL_DIR,
        handler._PLACEHOLDER_PIPELINE_NAME: sys.argv[2],
    },
)
"""

pytestmark = pytest.mark.e2e


def run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result


def uv(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run([*_uv(), *args], timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # The sdist, then the wheel from it in a clean folder: a wheel built in the work tree
    # would take stale modules from setuptools' build/ folder (pypa/setuptools#1871).
    uv("build", "--out-dir", str(out), timeout=300)
    (built,) = out.glob("backbone_regularizer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv: the lock's third-party packages of the core install, then our wheel."""
    folder = tmp_path_factory.mktemp("user-venv")
    requirements = folder / "requirements.txt"
    uv(
        *("export", "--frozen", "--no-hashes", "--no-emit-project", "--no-dev"),
        *("--no-header", "--no-annotate", "--output-file", str(requirements)),
    )
    python = run(
        [str(REPO / ".ci" / "find-python")],
        timeout=60,
        env={**os.environ, "UV": _uv()[0]},
    ).stdout.strip()
    env = folder / "venv"
    started = time.perf_counter()
    uv("venv", "--seed", "--quiet", "--python", python, str(env))
    target = ("--python", str(env / "bin" / "python"))
    uv("pip", "install", "--quiet", *target, "--requirement", str(requirements))
    uv("pip", "install", "--quiet", *target, "--no-deps", str(wheel))
    # The locked set satisfies every range our wheel declares.
    uv("pip", "check", *target)
    print(f"fresh venv installed in {time.perf_counter() - started:.1f} s")
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory, venv) -> Path:
    """TFX's penguin template as the user's project, with the user's files added."""
    folder = tmp_path_factory.mktemp("user") / "project"
    run([str(venv / "bin" / "python"), "-c", COPY_TEMPLATE, str(folder), PIPELINE_NAME], 120)
    assert (folder / "pipeline" / "configs.py").is_file()  # the template's own package
    for source in USER_FILES.rglob("*.py"):
        target = folder / source.relative_to(USER_FILES)
        assert not target.exists(), f"{target} is the template's; the user adds files only"
        shutil.copyfile(source, target)
    return folder


def in_project(project: Path, venv: Path) -> dict:
    """cwd and environment of a process in the user's project, as in its container."""
    env = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(project),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore::FutureWarning",
    }
    return {"cwd": project, "env": env}


def write_images(folder: Path) -> None:
    """Two classes of 8 tiny PNGs each (dark and light noise)."""
    rng = np.random.default_rng(0)
    for label, mean in (("dark", 60), ("light", 190)):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(mean, 30, (32, 32, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / label / f"{label}-{i}.png")


def test_the_wheel_installs_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    top_level = {n.split("/")[0] for n in names} - {dist_info}
    assert top_level == {"backbone_regularizer"}
    # Every module of the tree, and the demo's package data, made it through the sdist.
    in_tree = {
        "backbone_regularizer/" + str(path.relative_to(REPO))
        for folder in ("components", "pipeline")
        for path in (REPO / folder).rglob("*")
        if path.suffix in (".py", ".keras", ".json") and "__pycache__" not in path.parts
    }
    assert in_tree <= set(names), sorted(in_tree - set(names))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"{dist_info}/top_level.txt").decode().split() == [
            "backbone_regularizer"
        ]
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    # Ranges, not pins; the extras' packages are not in the core install.
    requires = [
        Requirement(line.split(":", 1)[1])
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    pins = [str(r) for r in requires if any(s.operator == "==" for s in r.specifier)]
    assert pins == []
    core = {r.name: r for r in requires if r.marker is None}
    assert str(core["tfx"].specifier) == "<1.17,>=1.16" and core["tfx"].extras == {"kfp"}
    assert not {"tensorflow-io", "keras-hub", "boto3"} & set(core)
    assert core["apache-beam"].extras == {"gcp"}
    extras = {r.name: r for r in requires if r.marker is not None}
    assert extras["keras-hub"].marker.evaluate({"extra": "kerashub"})
    assert extras["tensorflow-io"].marker.evaluate({"extra": "s3"})


def test_the_pipeline_runs_in_the_template_project(project, venv, tmp_path):
    data, output = tmp_path / "data", tmp_path / "output"
    write_images(data)
    started = time.perf_counter()
    run(
        [str(venv / "bin" / "python"), "backbone_runner.py", "local", str(data), str(output)],
        timeout=1200,
        **in_project(project, venv),
    )
    print(f"LocalDagRunner run: {time.perf_counter() - started:.1f} s")

    nodes = latest_run(connect(str(output / "tfx_metadata" / "metadata.db")), PIPELINE_NAME)
    assert {n: r.state for n, r in nodes.items()} == dict.fromkeys(NODES, "COMPLETE")
    [model] = nodes["Trainer"].outputs["model"]
    serving = Path(model.uri) / "Format-Serving"
    assert (serving / "model.keras").is_file()
    # Written by the project's run_fn after load_base_model(fn_args) and one epoch.
    penalties = json.loads((serving / "penalties.json").read_text())
    assert penalties["regularized_weights"] == 52  # every MobileNetV2 kernel
    assert penalties["penalty_terms_backbone"] == 52
    assert penalties["penalty_terms_model"] == 52
    assert penalties["penalty_at_load"] == pytest.approx(penalties["recorded_penalty"], rel=1e-6)
    assert penalties["recorded_penalty"] > 0
    assert len(penalties["loss"]) == 1 and np.isfinite(penalties["loss"][0])


def spec_modules(job: dict) -> dict[str, list[str]]:
    """Per task: every ``module[:attribute]`` its container imports, as the spec names them."""
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    named = {}
    for task_name, task in spec["root"]["dag"]["tasks"].items():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = executors[label]["container"]
        command, args = container["command"], container["args"]
        entrypoint = command[command.index("-m") + 1]
        module, _, cls = args[args.index("--executor_class_path") + 1].rpartition(".")
        modules = [f"{entrypoint}:main", f"{module}:{cls}"]
        parameters = task.get("inputs", {}).get("parameters", {})
        if "run_fn" in parameters:
            run_fn = parameters["run_fn"]["runtimeValue"]["constant"]
            modules.append(":".join(run_fn.rsplit(".", 1)))
        named[task_name] = modules
    return named


def test_every_module_the_compiled_spec_names_imports_in_the_project(project, venv, tmp_path):
    path = tmp_path / "pipeline.json"
    python = str(venv / "bin" / "python")
    arguments = ["gs://bucket/data", "gs://bucket/root", IMAGE, str(path)]
    run([python, "backbone_runner.py", "kubeflow", *arguments], 600, **in_project(project, venv))
    job = json.loads(path.read_text())
    named = spec_modules(job)
    assert named == {
        task: [f"{ENTRYPOINT_MODULE}:main", ":".join(EXECUTORS[task].rsplit(".", 1))]
        + (["models.backbone_model:run_fn"] if task == "Trainer" else [])
        for task in NODES
    }
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {IMAGE}
    site_packages = venv / "lib" / "python3.10" / "site-packages"
    for task, modules in named.items():
        # One process per step, as in its container.
        result = run(
            [python, "check_imports.py", *modules], timeout=300, **in_project(project, venv)
        )
        files = json.loads(result.stdout.splitlines()[-1])
        for spec, file in files.items():
            where = project if spec.startswith("models.") else site_packages
            assert Path(file).is_relative_to(where), (task, spec, file)


def test_the_template_and_our_package_do_not_shadow_each_other(project, venv, tmp_path):
    python = str(venv / "bin" / "python")
    ours = f"{ENTRYPOINT_MODULE}:main"
    # Inside the project: the template's own `pipeline` package and ours, side by side.
    template = "pipeline.configs:PIPELINE_NAME"
    result = run([python, "check_imports.py", template, ours], 300, **in_project(project, venv))
    files = json.loads(result.stdout.splitlines()[-1])
    assert Path(files[template]).is_relative_to(project)
    assert Path(files[ours]).is_relative_to(venv)
    # Outside it: our wheel provides no generic top-level name at all.
    outside = {**in_project(project, venv), "cwd": tmp_path}
    del outside["env"]["PYTHONPATH"]
    probe = (
        "import importlib.util, json; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None "
        "for n in ('pipeline', 'components', 'backbone_regularizer')}))"
    )
    found = json.loads(run([python, "-c", probe], 120, **outside).stdout)
    assert found == {"pipeline": False, "components": False, "backbone_regularizer": True}
