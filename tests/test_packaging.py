"""One import root: nothing of ours imports or installs a generic top-level name.

The wheel maps ``components/`` and ``pipeline/`` to ``backbone_regularizer.components`` and
``backbone_regularizer.pipeline`` (pyproject.toml). Inside a user's TFX project, whose own
``pipeline/`` package comes first on ``PYTHONPATH``, a stray ``import pipeline...`` would fail;
here, with the repository on ``sys.path``, it would silently work. These checks read the code.
The installed wheel itself is checked by the template integration test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomli

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ("pipeline", "components")
SOURCES = ("components", "pipeline", "tests", "benchmarks")
# A dotted module path starting with a generic name, in a string (subprocess `-m`, mock
# targets, executor class paths); file names such as "pipeline.json" are not module paths.
GENERIC_PATH = re.compile(r"^(pipeline|components)\.[a-z_]+(\.[A-Za-z_]+)*$")
FILE_NAMES = re.compile(r"\.(json|ya?ml|py|txt)$")


# A user's TFX project (tests/integration/): there `pipeline` is the user's own package.
USER_PROJECT = ROOT / "tests" / "integration"


def python_files():
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if USER_PROJECT not in path.parents:
                yield path


def test_no_module_imports_a_generic_top_level_name():
    offenders = []
    for path in python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                names = (
                    [value] if GENERIC_PATH.match(value) and not FILE_NAMES.search(value) else []
                )
            else:
                continue
            for name in names:
                if name.split(".")[0] in GENERIC:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


def test_the_package_list_is_every_package_of_the_tree():
    config = tomli.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    assert mapping == {
        "backbone_regularizer.components": "components",
        "backbone_regularizer.pipeline": "pipeline",
    }
    in_tree = sorted(
        "backbone_regularizer." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in GENERIC
        for init in (ROOT / folder).rglob("__init__.py")
    )
    assert sorted(setuptools["packages"]) == in_tree


def test_the_console_script_and_package_data_use_the_import_root():
    config = tomli.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"] == {
        "backbone-reg": "backbone_regularizer.pipeline.cli.main:main"
    }
    for package in config["tool"]["setuptools"]["package-data"]:
        assert package.startswith("backbone_regularizer.")
