"""What the wheel (and so the image, built from it) holds: the service, no test doubles."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2]
FAKES_DIR = APP_DIR / "tests" / "fakes"


def test_the_wheel_holds_no_test_double(tmp_path: Path) -> None:
    # Built as app/scripts/build-image builds it: pip, from the app's folder.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(tmp_path),
            str(APP_DIR),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("morpheus-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sources = {name: archive.read(name) for name in names if name.endswith(".py")}
    assert "morpheus/providers/runpod.py" in names  # the real client is there
    fakes = {path.stem for path in FAKES_DIR.glob("*.py") if path.stem != "__init__"}
    assert "fake_runpod" in fakes
    shipped = [name for name in names if any(fake in name for fake in fakes)]
    assert not shipped, f"test doubles in the wheel: {shipped}"
    # Nor the fake's key, copied somewhere else.
    assert not [name for name, text in sources.items() if b"test-only-runpod-key" in text]
