"""A wheel built from a checkout carries what runs without one: the demo page with its
socket.io-client, and the test contracts with their artifacts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.harness.environment import ROOT


def test_the_wheel_carries_the_page_and_the_contracts(tmp_path: Path) -> None:
    existed = (ROOT / "build").exists()
    try:
        names = _wheel_names(tmp_path)
    finally:
        if not existed:  # setuptools builds in the checkout
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    for name in (
        "realtime/web/index.html",
        "realtime/web/app.js",
        "realtime/web/app.css",
        "realtime/web/vendor/socket.io.min.js",
        "chainpulse/contracts/artifacts.json",
        "chainpulse/contracts/TestPair.sol",
    ):
        assert name in names, name


def _wheel_names(tmp_path: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = tmp_path.glob("chainpulse-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())
