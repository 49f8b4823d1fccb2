"""Running the real ``orderflow`` command (``python -m services.cli``) from a test, the way an operator would.

``start_orderflow`` spawns it and returns an ``OrderflowProcess`` (a ``subprocess.Popen``) whose console output
goes to files in a temporary folder (a pipe nobody reads would block a chatty process); ``run_orderflow`` runs one
to its end.
Every assertion on an exit code says what the process printed and the tail of its JSONL log:

    detector = start_orderflow("detect", "--symbol", "AAPL", env=redis_environment(redis_url, prefix, tmp_path))
    detector.send_signal(signal.SIGTERM)
    detector.expect_exit(0, timeout=30)   # AssertionError: ... exited 1, expected 0 / stdout / stderr / JSONL log
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.redis_server import free_port

ORDERFLOW = (sys.executable, "-m", "services.cli")
"""The command line of ``orderflow`` in this virtualenv and checkout (also for ``asyncio.create_subprocess_exec``)."""

SETTINGS_OF_THE_HOST = ("REDIS_URL", "POLYGON_API_KEY")
REPORTED_CHARACTERS = 4000  # of each stream and of the JSONL log, in a failure message


def orderflow_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any orderflow setting of the host (``ORDER_FLOW_*``, ``REDIS_URL``,
    ``POLYGON_API_KEY``), with this checkout on ``PYTHONPATH``, then ``variables``
    (e.g. ``orderflow_environment(REDIS_URL="redis://127.0.0.1:6379/0", COLUMNS="200")``)."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ORDER_FLOW_") and name not in SETTINGS_OF_THE_HOST
    }
    return {**inherited, "PYTHONPATH": str(REPO), **variables}


def redis_environment(redis_url: str, prefix: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    """A command's environment against ``redis_url`` under key ``prefix``: its JSONL log in ``tmp_path/logs``,
    metrics on a free port, the absolute thresholds (the demo scenarios have no history) unless ``variables`` say
    otherwise."""
    defaults = {
        "REDIS_URL": redis_url,
        "ORDER_FLOW_KEY_PREFIX": prefix,
        "ORDER_FLOW_LOG_DIR": str(tmp_path / "logs"),
        "ORDER_FLOW_METRICS_PORT": str(free_port()),
        "ORDER_FLOW_THRESHOLD_MODE": "absolute",
    }
    return orderflow_environment(**{**defaults, **variables})


def _tail(text: str) -> str:
    return text if len(text) <= REPORTED_CHARACTERS else "…" + text[-REPORTED_CHARACTERS:]


class OrderflowProcess(subprocess.Popen[str]):
    """A running ``orderflow`` command; ``stdout`` and ``stderr`` go to temporary files read by ``console``."""

    def __init__(self, arguments: tuple[str, ...], env: dict[str, str], cwd: Path, **options: Any) -> None:
        folder = Path(tempfile.mkdtemp(prefix="orderflow-console-"))
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        self.stdout_path, self.stderr_path = folder / "stdout", folder / "stderr"
        self.log_folder = Path(env["ORDER_FLOW_LOG_DIR"]) if "ORDER_FLOW_LOG_DIR" in env else None
        self.command = " ".join(arguments)
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            super().__init__(
                [*ORDERFLOW, *arguments], cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True, **options
            )

    def output(self) -> tuple[str, str]:
        """What the process wrote so far to stdout and to stderr."""
        read = [path.read_text(encoding="utf-8", errors="replace") for path in (self.stdout_path, self.stderr_path)]
        return read[0], read[1]

    def report(self) -> str:
        """The command, its exit code, its console output and the tail of the JSONL log folder it writes to."""
        stdout, stderr = self.output()
        lines = [
            f"orderflow {self.command} (exit code {self.returncode})",
            f"--- stdout ---\n{_tail(stdout)}",
            f"--- stderr ---\n{_tail(stderr)}",
        ]
        if self.log_folder is not None:
            logs = sorted(self.log_folder.glob("*.jsonl"))
            text = "".join(path.read_text(encoding="utf-8", errors="replace") for path in logs)
            lines.append(f"--- JSONL log {self.log_folder} ---\n{_tail(text) if text else '(empty)'}")
        return "\n".join(lines)

    def expect_exit(self, code: int = 0, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for the exit; an AssertionError with ``report()`` unless it exits with ``code``."""
        try:
            self.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise AssertionError(f"still running after {timeout} s (killed)\n{self.report()}") from None
        assert self.returncode == code, f"exited {self.returncode}, expected {code}\n{self.report()}"

    def stop_if_running(self) -> None:
        """Kill the process if it still runs (a test's ``finally``)."""
        if self.poll() is None:
            self.kill()
            self.wait()


def start_orderflow(*arguments: str, env: dict[str, str], cwd: Path = REPO, **options: Any) -> OrderflowProcess:
    """Start ``orderflow <arguments>`` (e.g. ``start_orderflow("detect", "--symbol", "AAPL", env=...)``)."""
    return OrderflowProcess(arguments, env=env, cwd=cwd, **options)


def run_orderflow(
    *arguments: str, env: dict[str, str], cwd: Path = REPO, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``orderflow <arguments>`` to its end (killed after ``timeout`` s, then ``subprocess.TimeoutExpired``);
    its exit code and console output, as ``subprocess.run(..., capture_output=True, text=True)`` gives them."""
    process = start_orderflow(*arguments, env=env, cwd=cwd)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        process.kill()
        process.wait()
        stdout, stderr = process.output()
        raise subprocess.TimeoutExpired(process.args, timeout, output=stdout, stderr=stderr) from expired
    stdout, stderr = process.output()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
