"""No secret in plaintext: every vault file in the working tree and in git's index is encrypted.

inventories/.gitignore keeps vault.yml out of git until it is added with
`git add -f` once encrypted; this test catches a plaintext one that got in anyway
(or sits in the tree waiting for `ansible-vault encrypt`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER = b"$ANSIBLE_VAULT;"
NAMES = ("vault.yml", "vault.yaml", "vault.json")
SKIP_DIRS = {".git", ".venv", ".cache", ".ansible", "node_modules", "__pycache__"}


def is_vault_file(name: str) -> bool:
    return name in NAMES or name.endswith(tuple(f".{n}" for n in NAMES))


def plaintext_vaults_on_disk(root: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = Path(folder) / name
            if is_vault_file(name) and not path.read_bytes().startswith(HEADER):
                found.append(str(path.relative_to(root)))
    return sorted(found)


def plaintext_vaults_in_index(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    found = []
    for path in filter(None, listed.split("\0")):
        if is_vault_file(Path(path).name):
            staged = subprocess.run(
                ["git", "show", f":{path}"], cwd=root, capture_output=True, check=True
            ).stdout
            if not staged.startswith(HEADER):
                found.append(path)
    return sorted(found)


def test_every_vault_file_is_encrypted():
    plain = plaintext_vaults_on_disk(ROOT)
    assert plain == [], (
        f"plaintext vault file(s): {', '.join(plain)}. Encrypt each one before anything "
        "else: ansible-vault encrypt --vault-id <environment>@prompt <file>"
    )


def test_git_holds_no_plaintext_vault_file():
    plain = plaintext_vaults_in_index(ROOT)
    assert plain == [], (
        f"plaintext vault file(s) staged or committed: {', '.join(plain)}. Remove them from "
        "the index (git rm --cached <file>), encrypt them, and rotate the secrets they held"
    )


@pytest.mark.parametrize("env", ["production", "staging"])
def test_vault_example_documents_the_encrypt_command(env):
    example = ROOT / "inventories" / env / "group_vars" / "all" / "vault.yml.example"
    text = example.read_text()
    target = f"inventories/{env}/group_vars/all/vault.yml"
    assert f"ansible-vault encrypt --vault-id {env}@prompt {target}" in text
    assert f"git add -f {target}" in text
    assert (ROOT / "inventories" / ".gitignore").read_text().splitlines()[-1] == "vault.yml"


def test_the_check_tells_encrypted_from_plaintext(tmp_path):
    """The checks above can fail: a real ansible-vault file passes, a plaintext one does not."""
    secrets = tmp_path / "inventories" / "prod" / "group_vars" / "all"
    secrets.mkdir(parents=True)
    (secrets / "vault.yml").write_text("vault_db_password: test-only-value\n")
    (tmp_path / "group_vars.vault.yml").write_text("vault_x: test-only\n")
    password = tmp_path / "password"
    password.write_text("test-only-vault-password\n")
    encrypted = tmp_path / "inventories" / "stage" / "vault.yml"
    encrypted.parent.mkdir(parents=True)
    encrypted.write_text("vault_db_password: test-only-value\n")
    subprocess.run(
        ["ansible-vault", "encrypt", "--vault-password-file", str(password), str(encrypted)],
        check=True,
        capture_output=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )
    assert encrypted.read_bytes().startswith(HEADER)
    assert plaintext_vaults_on_disk(tmp_path) == [
        "group_vars.vault.yml",
        "inventories/prod/group_vars/all/vault.yml",
    ]

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-f", "."], cwd=tmp_path, check=True)
    assert plaintext_vaults_in_index(tmp_path) == [
        "group_vars.vault.yml",
        "inventories/prod/group_vars/all/vault.yml",
    ]
