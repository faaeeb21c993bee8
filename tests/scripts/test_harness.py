"""Unit tests of the harness's pure parts: mirror discovery and definition hashes."""

import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load(script: str):
    """Import an extension-less script from scripts/ as a module."""
    name = f"morpheus_script_{script}"
    loader = importlib.machinery.SourceFileLoader(name, str(ROOT / "scripts" / script))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


harness = load("harness")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n",
            "http://deb.debian.org/debian",
        ),
        (
            "deb http://mirror.example.org/debian/ bookworm main\n",
            "http://mirror.example.org/debian",
        ),
        (
            "deb http://security.debian.org/debian-security bookworm-security main\n"
            "deb [arch=amd64] https://mirror.example.org/debian bookworm main\n",
            "https://mirror.example.org/debian",
        ),
        ("deb https://deb.nodesource.com/node_20.x nodistro main\n", harness.debian_mirror([])),
    ],
)
def test_debian_mirror_comes_from_apt_sources(tmp_path, content, expected):
    sources = tmp_path / "sources.list"
    sources.write_text(content)
    assert harness.debian_mirror([sources]) == expected


def test_debian_mirror_defaults_when_nothing_names_one(tmp_path):
    assert harness.debian_mirror([tmp_path / "absent"]) == "http://deb.debian.org/debian"


def test_definition_hash_changes_with_its_inputs():
    assert harness.debian_definition("http://a/debian") == harness.debian_definition(
        "http://a/debian"
    )
    assert harness.debian_definition("http://a/debian") != harness.debian_definition(
        "http://b/debian"
    )


def test_derived_image_hash_follows_context_and_parent(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    first = harness.context_digest(tmp_path, "parent-1")
    assert harness.context_digest(tmp_path, "parent-1") == first
    assert harness.context_digest(tmp_path, "parent-2") != first
    (tmp_path / "Dockerfile").write_text("FROM base\nRUN true\n")
    assert harness.context_digest(tmp_path, "parent-1") != first


def test_clean_removes_only_the_images_the_harness_builds():
    listed = ["morpheus/app:1a2b3c4d5e6f", "morpheus/debian:bookworm", "morpheus/systemd:bookworm"]
    assert harness.own_images(listed) == ["morpheus/systemd:bookworm", "morpheus/debian:bookworm"]
    assert harness.own_images(["morpheus/app:1a2b3c4d5e6f"]) == []


def test_the_fleet_image_has_the_common_roles_packages_but_the_kernel_owned_ones():
    """images/fleet/packages is what the common role installs on every host with its
    defaults (common_packages, the hardening packages and the ones its task names),
    without auditd and acct: a package the role no longer installs must not stay in the
    multihost instances, where it would hide the change."""
    defaults = yaml.safe_load((ROOT / "roles/common/defaults/main.yml").read_text())
    tasks = yaml.safe_load((ROOT / "roles/common/tasks/install.yml").read_text())
    (install,) = [t for t in tasks if t.get("name") == "Install the base packages"]
    named = re.findall(r"'([a-z0-9][a-z0-9.+-]*)'", install["ansible.builtin.apt"]["name"])
    assert "auditd" in named and "acct" in named, named
    role = {*defaults["common_packages"], *defaults["common_hardening_packages"], *named}
    assert defaults["common_extra_packages"] == []
    image = (ROOT / "images/fleet/packages").read_text().split()
    assert len(image) == len(set(image))
    assert set(image) == role - {"auditd", "acct"}
