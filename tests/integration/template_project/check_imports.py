"""Import each ``module[:attribute]`` given, in this process, as a container step would.

Prints one JSON object: for each argument, the file the module was loaded from. Fails (exit
code 1, traceback) on the first module that does not import or attribute that is missing.

    python check_imports.py backbone_regularizer.pipeline.kubeflow.entrypoint:main ...
"""

from __future__ import annotations

import importlib
import json
import sys


def main(specs: list[str]) -> None:
    found = {}
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            getattr(module, attribute)
        found[spec] = module.__file__
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1:])
