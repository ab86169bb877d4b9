"""What a ``backbone-reg`` command shows: its own lines on the console, the rest in a log file.

TFX, TFMA, Beam, absl, Keras, Python warnings and TensorFlow's C++ logging all write to the
process's stdout and stderr (file descriptors 1 and 2), and Beam's DirectRunner workers inherit
both. ``Console`` points the two descriptors at the command's log file while the command runs,
so all of that lands there once; the command's own lines (``Console.echo``) go to the terminal
through copies of the original descriptors, and into the log too. With ``verbose`` the log is
also streamed to the terminal's stderr.

Under click's ``CliRunner`` (tests) stdout is not a file descriptor: then only Python's
``sys.stdout``/``sys.stderr`` are redirected, and the command's lines go to the runner.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import sys
import threading
import traceback
from typing import NoReturn

from backbone_regularizer.pipeline.trainer.progress import CONSOLE_FD_ENV

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CurrentStderrHandler(logging.StreamHandler):
    """A logging handler that writes to whatever ``sys.stderr`` is when a record arrives.

    ``logging.StreamHandler`` keeps the stream it was created with; this one follows
    ``Console``'s redirection (the log file while a command runs).
    """

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property decides
        pass


def log_path(folder: str, command: str, now: datetime.datetime | None = None) -> str:
    """``<folder>/logs/<command>-<UTC time>.log`` (the folder is made by ``Console``)."""
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%S")
    return os.path.join(os.path.abspath(folder), "logs", f"{command}-{stamp}.log")


def format_step(
    node: str, status: str, index: int = 0, total: int = 0, seconds: float | None = None
) -> str:
    """``[ 3/10] StatisticsGen          completed     4.2 s``: one console line of a step.

    Without ``total`` (work before the pipeline, e.g. the demo's data) the counter is blank.
    """
    counter = f"[{index:>{len(str(total))}}/{total}]" if total else ""
    text = f"{counter:<7} {node:<22} {status:<9}"
    if seconds is not None:
        text += f" {seconds:7.1f} s"
    return text.rstrip()


def is_verbose(ctx, flag: bool) -> bool:
    """A command's ``--verbose``, or the group's (``backbone-reg -v run``)."""
    return flag or bool((getattr(ctx, "obj", None) or {}).get("verbose"))


def _set_line_buffering(stream, value: bool | None) -> bool | None:
    """Set a text stream's line buffering if it has one; return what it was."""
    before = getattr(stream, "line_buffering", None)
    if before is not None and value is not None and hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=value)
    return before


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class Console:
    """Redirect everything a command's libraries print to ``path``; keep the console for
    the command's own lines.

    Use as a context manager around the command's work::

        with Console(path, verbose=False) as console:
            console.echo("running ...")
            run_the_pipeline()  # TFX, Beam, Keras output -> path

    Args:
        path: the log file (appended to; its folder is created).
        verbose: also stream the log to the console's stderr.
        progress: leave the console's descriptor in ``CONSOLE_FD_ENV`` for the Trainer's
            progress line (not with ``verbose``: the log streams Keras' own lines).
        progress_err: draw that line on the console's stderr (``run --json``: stdout holds
            the JSON alone).
    """

    def __init__(
        self, path: str, verbose: bool = False, progress: bool = False, progress_err: bool = False
    ):
        self.path = path
        self.verbose = verbose
        self.progress = progress and not verbose
        self.progress_err = progress_err
        self._lock = threading.Lock()
        self._log_fd: int | None = None
        self._saved: tuple[int, int] | None = None
        self._tee: threading.Thread | None = None
        self._python_streams = None
        self._environ_before: str | None = None

    # -- the command's own lines --------------------------------------------------------
    def echo(self, text: str = "", err: bool = False) -> None:
        """Write a line to the console (stderr with ``err``) and to the log."""
        stream = self.err if err else self.out
        stream.write(text + "\n")
        stream.flush()
        self._log(text + "\n")

    def fail(self, error: BaseException | str, step: str | None = None) -> NoReturn:
        """Say what failed (and in which step) and where the log is; exit with code 1.

        The traceback, when there is one, goes to the log only.
        """
        if isinstance(error, BaseException):
            if error.__traceback__ is not None:
                self._log("".join(traceback.format_exception(error)))
            message = str(error) or type(error).__name__
            if step is not None:
                message = f"{type(error).__name__}: {message}"
        else:
            message = error
        where = f"step {step} failed: " if step else ""
        self.echo(f"error: {where}{message}", err=True)
        self.echo(f"log: {self.path}", err=True)
        raise SystemExit(1)

    def _log(self, text: str) -> None:
        for python_stream in (sys.stdout, sys.stderr):
            try:
                python_stream.flush()  # what libraries wrote before this line comes first
            except (OSError, ValueError):
                pass
        with self._lock:
            os.write(self._log_fd, text.encode("utf-8", "replace"))

    # -- redirection ----------------------------------------------------------------------
    def __enter__(self) -> Console:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._log_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Everything at INFO and above goes to the log (the console stays quiet anyway).
        self._root_level = logging.root.level
        logging.root.setLevel(logging.INFO)
        self._handler = None if logging.root.handlers else CurrentStderrHandler()
        if self._handler is not None:
            logging.root.addHandler(self._handler)
        out_fd, err_fd = _fileno(sys.stdout), _fileno(sys.stderr)
        if out_fd is not None and err_fd is not None:
            self._redirect_descriptors(out_fd, err_fd)
        else:
            self._redirect_python_streams()
        return self

    def _redirect_descriptors(self, out_fd: int, err_fd: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.out = os.fdopen(os.dup(out_fd), "w", buffering=1, encoding="utf-8")
        self.err = os.fdopen(os.dup(err_fd), "w", buffering=1, encoding="utf-8")
        self._saved = (os.dup(1), os.dup(2))
        if self.verbose:
            read_end, write_end = os.pipe()
            self._tee = threading.Thread(target=self._stream_log, args=(read_end,), daemon=True)
            self._tee.start()
            target = write_end
        else:
            target = self._log_fd
        os.dup2(target, 1)
        os.dup2(target, 2)
        if self.verbose:
            os.close(write_end)
        # Line buffering keeps the log in the order things happened.
        self._line_buffering = [_set_line_buffering(s, True) for s in (sys.stdout, sys.stderr)]
        if self.progress:
            self._environ_before = os.environ.get(CONSOLE_FD_ENV)
            stream = self.err if self.progress_err else self.out
            os.environ[CONSOLE_FD_ENV] = str(stream.fileno())

    def _stream_log(self, read_end: int) -> None:
        """``verbose``: copy what fds 1 and 2 receive to the log and the console's stderr."""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                with self._lock:
                    os.write(self._log_fd, chunk)
                self.err.buffer.write(chunk)
                self.err.buffer.flush()

    def _redirect_python_streams(self) -> None:
        self.out, self.err = sys.stdout, sys.stderr
        self._python_streams = (sys.stdout, sys.stderr)
        log = open(os.dup(self._log_fd), "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        sys.stdout = sys.stderr = _Tee(log, self.err) if self.verbose else log

    def __exit__(self, exc_type, error, tb) -> None:
        # An error no command caught (a bug, or a library's surprise) is reported like a
        # failed step: its message and the log on the console, its traceback in the log.
        unexpected = isinstance(error, Exception)
        if unexpected:
            self._log("".join(traceback.format_exception(error)))
            self.echo(f"error: {type(error).__name__}: {error}", err=True)
            self.echo(f"log: {self.path}", err=True)
        self._restore()
        if unexpected:
            raise SystemExit(1) from error

    def _restore(self) -> None:
        logging.root.setLevel(self._root_level)
        if self._handler is not None:
            logging.root.removeHandler(self._handler)
        if self._python_streams is not None:
            sys.stdout.close()
            sys.stdout, sys.stderr = self._python_streams
        else:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for fd in self._saved:
                os.close(fd)
            for stream, before in zip((sys.stdout, sys.stderr), self._line_buffering, strict=True):
                _set_line_buffering(stream, before)
            if self._tee is not None:
                # Beam workers may still hold the pipe; do not wait for them forever.
                self._tee.join(timeout=10)
            if self.progress:
                if self._environ_before is None:
                    os.environ.pop(CONSOLE_FD_ENV, None)
                else:
                    os.environ[CONSOLE_FD_ENV] = self._environ_before
            self.out.close()
            self.err.close()
        os.close(self._log_fd)


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self._streams = streams

    def write(self, text):
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self._streams:
            stream.flush()

    def close(self):
        self._streams[0].close()
