"""The load generator's image, morpheus/loadtest:<definition>, built on this machine.

Built from the harness's Debian base (morpheus/debian:bookworm, `make harness`) with
loadtest/Dockerfile. No registry is needed: the Python wheels (loadtest/requirements.txt,
pinned by constraints.txt) are downloaded here with the project's pip and copied into
the build, and kept in MORPHEUS_WHEEL_CACHE (default ~/.cache/morpheus/wheels) for the
next build with the same pins. The tag is a hash of everything the image is made of,
so an image is built once per definition and older ones are removed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import docker
from .errors import LoadTestError

IMAGE = "morpheus/loadtest"
BASE_IMAGE = "morpheus/debian:bookworm"
LABEL = "org.morpheus.loadtest.definition"
PYTHON_VERSION = "3.11"  # Debian 12's, the image's
# glibc 2.36 (Debian 12) runs every manylinux wheel up to manylinux_2_36.
GLIBC_MINOR = 36


def wheel_cache() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "morpheus" / "wheels"
    return Path(os.environ.get("MORPHEUS_WHEEL_CACHE", default))


def platforms(machine: str) -> list[str]:
    """The wheel platform tags Debian 12 runs on `machine`, newest first."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]


def definition(loadtest_dir: Path, constraints: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in (loadtest_dir / "Dockerfile", loadtest_dir / "requirements.txt", constraints):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def download_wheels(loadtest_dir: Path, constraints: Path, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    cmd += ["--dest", str(partial), "--only-binary=:all:", "--implementation", "cp"]
    cmd += ["--python-version", PYTHON_VERSION]
    for tag in platforms(platform.machine()):
        cmd += ["--platform", tag]
    cmd += [
        "--constraint",
        str(constraints),
        "--requirement",
        str(loadtest_dir / "requirements.txt"),
    ]
    result = docker.run(cmd, capture_output=True)
    if result.returncode != 0:
        raise LoadTestError(
            f"downloading the load generator's wheels failed:\n{result.stderr.strip()[-1500:]}",
            "PyPI must be reachable from this machine (pip download); rerun once it is.",
        )
    partial.rename(dest)


def remove_older(keep: str) -> None:
    listed = docker.docker("image", "ls", IMAGE, "--format", "{{.Repository}}:{{.Tag}}")
    for name in listed.stdout.split():
        if name != keep:
            docker.docker("image", "rm", name)


def ensure_image(loadtest_dir: Path, constraints: Path, say) -> str:
    """The image's name, built first when this definition has none yet."""
    base = docker.docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE)
    if base.returncode != 0:
        raise LoadTestError(
            f"the base image {BASE_IMAGE} is missing",
            "run `make harness` (make up does it too), then rerun.",
        )
    tag = f"{IMAGE}:{definition(loadtest_dir, constraints, base.stdout.strip())}"
    if docker.docker("image", "inspect", "--format", "{{.Id}}", tag).returncode == 0:
        return tag
    pins = hashlib.sha256(
        (loadtest_dir / "requirements.txt").read_bytes() + constraints.read_bytes()
    ).hexdigest()[:12]
    wheels = wheel_cache() / f"loadtest-{platform.machine()}-{pins}"
    if not wheels.is_dir():
        say(f"downloading the load generator's wheels into {wheels} (once per set of pins)")
        wheels.parent.mkdir(parents=True, exist_ok=True)
        download_wheels(loadtest_dir, constraints, wheels)
    say(f"building {tag} (once per definition, a minute or two)")
    with tempfile.TemporaryDirectory(prefix="morpheus-loadtest-image-") as context:
        shutil.copy(loadtest_dir / "Dockerfile", context)
        shutil.copy(loadtest_dir / "requirements.txt", context)
        shutil.copytree(wheels, Path(context) / "wheels")
        try:
            built = docker.docker(
                "build",
                "--tag",
                tag,
                "--label",
                f"{LABEL}={tag.rsplit(':', 1)[1]}",
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                context,
                timeout=1800,
            )
        except subprocess.TimeoutExpired:
            raise LoadTestError(
                f"building {tag} took more than 30 minutes",
                "check that the Debian mirror answers from containers, then rerun.",
            ) from None
    if built.returncode != 0:
        raise LoadTestError(
            f"building {tag} failed:\n{(built.stdout + built.stderr).strip()[-2000:]}",
            "fix what the build names (the Debian mirror must answer from containers), then rerun.",
        )
    remove_older(tag)
    return tag
