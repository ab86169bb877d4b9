"""End a command-line process with the exit code it earned, whatever was loaded.

tensorflow-io 0.37.1 registers ``s3://`` in ``tf.io.gfile``; once a process has used it, the
interpreter's teardown aborts with ``pure virtual method called`` and exit code 134
(tensorflow/io#2039, fixed upstream by tensorflow/io#2120, in no release). A KFP pod that exits
134 is a failed step even when its outputs were written, and a CLI that exits 134 fails the
user's script. So every entrypoint of this project finishes through ``run_and_exit``: it flushes
what the process wrote and leaves with ``os._exit``, which skips the teardown that aborts.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Flush stdout, stderr and logging handlers, then leave with ``code`` (no teardown)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to flush
            pass
    os._exit(code)


def exit_code(error: SystemExit) -> int:
    """The code ``sys.exit(value)`` would give: 0 for None, the int, 1 (message printed) else."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def run_and_exit(main: Callable[[], object]) -> NoReturn:
    """Run ``main()``; exit 0 on return, its code on ``SystemExit``, 1 on an uncaught error."""
    try:
        main()
    except SystemExit as error:
        exit_process(exit_code(error))
    except BaseException:  # noqa: BLE001 - report any error, then exit non-zero
        traceback.print_exc()
        exit_process(1)
    exit_process(0)
