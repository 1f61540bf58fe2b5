"""CPU training keeps freed memory mapped, unless the user tuned malloc already."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

CALL = "from llmexp.parallel.host_memory import keep_freed_memory; print(keep_freed_memory())"


def _call(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    return subprocess.run([sys.executable, "-c", CALL], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_set_on_glibc():
    assert _call() == "True"


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_a_users_malloc_settings_stand(env):
    assert _call(**env) == "False"
