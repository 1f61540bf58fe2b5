"""One run of an offline sweep as a child process: started in its own process group (so a stop
reaches the DDP ranks it may spawn), ended with the driver (Linux: a parent-death signal), its
output appended to a log file (a resumed run adds to the same one)."""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

STOP_GRACE_S = 15.0  # SIGTERM first; SIGKILL for a run that has not exited by then
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception|Interrupt)\b|llmexp\S*: error:)")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RunProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Optional[Path] = None):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with log_path.open("ab") as log:
            log.write(("\n$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self.popen = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float) -> Optional[int]:
        """The exit code, or None if still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """Stop the run and everything it started; its exit code."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            code = self.wait(grace)
            if code is not None:
                return code
        return self.popen.wait()

    def failure(self) -> str:
        """The line of the run's output that says why it failed: its last exception or
        `llmexp: error:` line (W&B's closing notes come after it), else its last line."""
        text = ANSI.sub("", self.log_path.read_text(errors="replace")).replace("\r", "\n")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if ERROR_LINE.match(line)]
        return (errors or lines or ["(no output)"])[-1]


def stop_leftover(pid: Optional[int], marker: str) -> None:
    """A run a killed driver left behind (no parent-death signal off Linux): stop it if the
    process with that id is still the one we started, known by `marker` in its command line."""
    if not pid:
        return
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        if marker not in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
            return
        os.killpg(pid, signal.SIGTERM)
    except OSError:  # gone already, or not ours to signal
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while cmdline.exists() and time.monotonic() < deadline:  # not our child: no wait(), poll
        time.sleep(0.2)
