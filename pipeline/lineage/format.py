"""The text form of a lineage tree (``backbone-reg lineage`` without ``--json``)."""

from __future__ import annotations

import json

# Left out of the text tree (still in the JSON): bookkeeping, not provenance.
_QUIET = frozenset(
    {
        "tfx_version",
        "is_external",
        "input_fingerprint",
        "payload_format",
        "file_format",
        "current_model",
        "baseline_model",
        "current_model_id",
        "baseline_model_id",
        "stats_dashboard_link",
        "sample_rate_by_split",
        "display_name",
    }
)


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 90 else text[:87] + "..."


def _artifact_line(node: dict) -> str:
    # Artifacts read from provenance records (``store.store_lineage``) have no MLMD id.
    name = (
        node["type"]
        if node.get("artifact_id") is None
        else f"{node['type']} #{node['artifact_id']}"
    )
    if node.get("seen_above"):
        return f"{name} (see above)"
    return f"{name} {node['uri']}"


def _detail_lines(node: dict) -> list[str]:
    if node.get("seen_above"):
        return []
    props = {k: v for k, v in node.get("properties", {}).items() if k not in _QUIET}
    lines = [f"{k}={_short(v)}" for k, v in sorted(props.items())]
    metrics = node.get("metrics")
    if metrics:
        for model_name, values in sorted(metrics["metrics"].items()):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
            lines.append(f"{model_name}: {shown}")
        lines.append(f"validation_ok={metrics['validation_ok']}")
    if node.get("metrics_error"):
        lines.append(f"metrics unreadable: {node['metrics_error']}")
    return lines


def format_lineage(tree: dict) -> str:
    """A readable text tree of ``lineage()``/``pushed_model_lineage()`` output.

    Each artifact line is followed by its properties, then the execution that produced it,
    whose inputs are indented below it (``key: Type #id uri``).
    """
    tree = tree.get("tree", tree)
    lines: list[str] = []

    def artifact(node: dict, label: str, prefix: str, last: bool, top: bool = False) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{label}{_artifact_line(node)}")
        inner = prefix if top else prefix + ("    " if last else "│   ")
        producer = node.get("producer")
        for detail in _detail_lines(node):
            lines.append(f"{inner}{'│ ' if producer else '  '}  {detail}")
        if producer:
            execution(producer, inner)

    def execution(producer: dict, prefix: str) -> None:
        ids = [
            f"execution {producer['execution_id']}" if producer.get("execution_id") else "",
            producer["state"],
            f"run {producer['run']}" if producer.get("run") else "",
        ]
        lines.append(f"{prefix}└── produced by {producer['node']} ({', '.join(filter(None, ids))})")
        inner = prefix + "    "
        children = [
            ("output ", key, item) for key, items in producer["outputs"].items() for item in items
        ] + [("", key, item) for key, items in producer["inputs"].items() for item in items]
        for index, (kind, key, item) in enumerate(children):
            artifact(item, f"{kind}{key}: ", inner, index == len(children) - 1)

    artifact(tree, "", "", True, top=True)
    return "\n".join(lines)
