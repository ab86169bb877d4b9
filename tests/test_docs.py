"""The documentation matches the tree: paths, links, module names, the README's size and
layout, and the public API that docs/api.md calls stable (with its run_fn example run)."""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
API = ROOT / "docs" / "api.md"
README_MAX_LINES = 250
# Top-level folders that are generated or local, never part of the repository's layout.
GENERATED = {"runs", "build", "dist", "__pycache__"}
# Where the package's modules live: `backbone_regularizer.<key>` is the folder `<value>`.
PACKAGE_DIRS = {"components": "components", "pipeline": "pipeline"}

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", re.MULTILINE)
MODULE_NAME = re.compile(r"^backbone_regularizer(\.[A-Za-z_][A-Za-z0-9_]*)+")
IMPORT = re.compile(r"^from (backbone_regularizer[\w.]*) import \(?([\w, ]+)", re.MULTILINE)


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "NOTES.md"]


def prose(path: Path) -> str:
    """The text of a markdown file without its fenced code blocks."""
    return FENCE.sub("", path.read_text())


def top_level_folders() -> set[str]:
    return {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in GENERATED
        and not p.name.endswith(".egg-info")
    }


def is_repo_path(span: str) -> bool:
    if any(c.isspace() for c in span) or "://" in span or "<" in span or "{" in span:
        return False
    return "/" in span and span.split("/")[0] in top_level_folders()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for heading in HEADING.findall(prose(path)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_the_docs_name_exists(path):
    assert path.exists(), f"Expected {path.relative_to(ROOT)} to exist"
    missing = [
        span
        for span in CODE_SPAN.findall(prose(path))
        if is_repo_path(span) and not glob.glob(str(ROOT / span.rstrip("/")))
    ]
    assert missing == []


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_stays_in_the_repository_and_resolves(path):
    problems = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor}")
    assert problems == []


def module_file(dotted: str) -> tuple[Path | None, list[str]]:
    """The file of the longest module prefix of ``dotted``, and the names after it."""
    parts = dotted.split(".")
    if parts[1] not in PACKAGE_DIRS:
        return None, parts[1:]
    base = ROOT / PACKAGE_DIRS[parts[1]]
    for end in range(len(parts), 1, -1):
        folder = base.joinpath(*parts[2:end])
        candidates = [folder / "__init__.py"]
        if end > 2:
            candidates.insert(0, folder.with_suffix(".py"))
        for candidate in candidates:
            if candidate.exists():
                return candidate, parts[end:]
    return None, parts[2:]


def named_modules(text: str) -> list[str]:
    """Dotted names in code spans (`backbone_regularizer.x.y.name`), and `from ... import a, b`
    of the code blocks as `backbone_regularizer.x.y.a`, `...y.b`."""
    names = [m.group(0) for span in CODE_SPAN.findall(text) if (m := MODULE_NAME.match(span))]
    for module, imported in IMPORT.findall(text):
        names += [f"{module}.{name}" for name in re.findall(r"\w+", imported)]
    return names


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_the_docs_name_exists(path):
    """A dotted name names a module of the tree, and a name its source defines or re-exports
    (read as text: importing every module would load TensorFlow)."""
    problems = []
    for dotted in named_modules(path.read_text()):
        source, rest = module_file(dotted)
        if source is None:
            problems.append(f"{dotted}: no such module")
        elif rest and not re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()):
            problems.append(f"{dotted}: {source.relative_to(ROOT)} has no {rest[0]!r}")
    assert problems == []


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def layout_paths() -> list[str]:
    section = README.read_text().split("\n## Layout\n", 1)[1]
    block = re.search(r"^```\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)
    return [line.split()[0] for line in block.splitlines() if line and not line[0].isspace()]


def test_the_layout_section_matches_the_tree():
    listed = layout_paths()
    assert [p for p in listed if not (ROOT / p).exists()] == []
    assert top_level_folders() <= {p.split("/")[0] for p in listed}


def stable_names() -> list[tuple[str, str]]:
    """(module, name) for every first-column name of a table under a `## \\`module\\`` heading."""
    names, module = [], None
    for line in API.read_text().splitlines():
        heading = re.match(r"^##+ `(backbone_regularizer[\w.]*)`$", line)
        if heading:
            module = heading.group(1)
        elif line.startswith("## "):
            module = None
        elif module and (cell := re.match(r"^\| `([A-Za-z_]\w*)", line)):
            names.append((module, cell.group(1)))
    return names


def test_api_page_lists_the_public_modules():
    modules = {module for module, _ in stable_names()}
    assert modules == {
        "backbone_regularizer.components",
        "backbone_regularizer.components.regularizer",
        "backbone_regularizer.pipeline.trainer",
        "backbone_regularizer.pipeline.kubeflow",
    }


def test_the_lazy_public_packages_load_neither_tfx_nor_tensorflow():
    """What docs/api.md promises, in a fresh interpreter (this one may have loaded them)."""
    lazy = [m for m in {module for module, _ in stable_names()} if not m.endswith(".regularizer")]
    child = (
        f"import importlib, sys; [importlib.import_module(m) for m in {sorted(lazy)!r}]; "
        "print([m for m in ('tensorflow', 'tfx', 'keras') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=True
    )
    assert len(lazy) == 3
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module, name", stable_names())
def test_every_stable_name_is_importable_from_its_module(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def tiny_backbone():
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    return keras.Model(inputs, keras.layers.Conv2D(8, 1, name="pointwise")(x))


def test_the_run_fn_example_trains_on_a_regularized_base(tmp_path):
    """The minimal run_fn of docs/api.md, run as TFX would: fn_args.base_model is
    <uri>/Format-Serving of a BackboneRegularizer-shaped output."""
    from backbone_regularizer.components.regularizer import RegularizationSpec, regularize_file
    from backbone_regularizer.pipeline.trainer import report_uri
    from tests.trainer.tfrecords import write_split

    text = API.read_text()
    marker = text.index("<!-- tests/test_docs.py runs this block")
    code = re.search(r"```python\n(.*?)```", text[marker:], re.DOTALL).group(1)

    serving = tmp_path / "regularized" / "Format-Serving"
    source = tmp_path / "source.keras"
    tiny_backbone().save(source)
    regularize_file(source, serving / "model.keras", RegularizationSpec(l2=1e-3))
    (serving / "model.report.json").rename(report_uri(str(serving)))
    files = write_split(tmp_path / "train", per_class=4)
    fn_args = SimpleNamespace(
        base_model=str(serving),
        train_files=[files],
        eval_files=[files],
        serving_model_dir=str(tmp_path / "serving"),
        custom_config=None,
    )

    namespace: dict = {}
    exec(compile(code, str(API), "exec"), namespace)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        namespace["run_fn"](fn_args)

    first_line = printed.getvalue().splitlines()[0]  # model.export prints its signature after
    assert first_line.startswith("base model: L2(l2=0.001) ")
    assert int(first_line.split()[-3]) == 3  # conv, depthwise and pointwise kernels: live
    assert (tmp_path / "serving" / "saved_model.pb").exists()
