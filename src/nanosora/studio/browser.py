"""The studio in a real browser: a server in a subprocess and Debian's headless chromium, driven
through Playwright, for the end-to-end test and the screenshots in docs/.

The browser is the system's (`make browser` installs Debian's package); Playwright is pointed at
it and never downloads one of its own. Playwright is a development dependency, imported here
only when a browser is started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def chromium_path() -> str:
    """``$NANOSORA_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the PATH."""
    given = os.environ.get("NANOSORA_CHROMIUM")
    found = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        raise FileNotFoundError(
            "no chromium for the studio's browser test: run `make browser` (installs Debian's "
            "chromium) or set NANOSORA_CHROMIUM to a Chromium binary"
        )
    return found


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(out: Path, log: Path, *args: str, timeout: float = 180.0) -> Iterator[str]:
    """Run `nanosora studio --out OUT --port FREE ARGS` until the block ends; yields its URL.

    The server's output goes to ``log``; the URL is the one it prints once it serves.
    """
    cmd = [sys.executable, "-m", "nanosora.cli", "studio", "--out", str(out),
           "--port", str(free_port()), *args]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            for line in log.read_text().splitlines():
                if line.startswith("nanosora studio: http"):
                    yield line.split()[2]
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"the studio exited with {proc.returncode}:\n{log.read_text()}")
            if time.time() - t0 > timeout:
                raise TimeoutError(f"the studio did not serve in {timeout:g} s:\n{log.read_text()}")
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright ``Browser`` on the system's chromium."""
    from playwright.sync_api import sync_playwright

    # chromium refuses its sandbox as root (containers, CI)
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=args)
        try:
            yield browser
        finally:
            browser.close()
