"""morpheus_local.playbook: site.yml run with its output shown and logged, and the CA copied.

A stand-in ansible-playbook (a shell script) plays the playbook; the CA's copy goes to
the fake_docker stand-in.
"""

from __future__ import annotations

import pytest
from morpheus_local import playbook
from morpheus_local.errors import LocalError
from morpheus_local.hosts import Host, Inventory

HOST = Host("morpheus-local", "172.30.10.10", frozenset({"edge", "acme"}))
INVENTORY = Inventory("inventories/local", [HOST], {"edge": [HOST.name], "acme": [HOST.name]})


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout of its own: playbooks/site.yml, .venv/bin and .cache/local under tmp_path."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "site.yml").write_text("---\n")
    (tmp_path / "bin").mkdir()
    cache = tmp_path / ".cache" / "local"
    for name, value in {
        "ROOT": tmp_path,
        "BIN": tmp_path / "bin",
        "CACHE": cache,
        "CA_FILE": cache / "ca.pem",
        "PLAYBOOK_LOG": cache / "up.log",
    }.items():
        monkeypatch.setattr(playbook, name, value)
    return tmp_path


def fake_ansible_playbook(checkout, script: str) -> None:
    tool = checkout / "bin" / "ansible-playbook"
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(0o755)


def test_the_output_is_shown_and_logged_without_colours(checkout, capsys):
    fake_ansible_playbook(checkout, r'printf "\033[0;32mok: [morpheus-local]\033[0m\n"; echo "$@"')
    playbook.run_playbook(INVENTORY)
    out = capsys.readouterr().out
    assert (
        "==> converging with playbooks/site.yml -i inventories/local (log: .cache/local/up.log)"
        in out
    )
    assert "\x1b[0;32mok: [morpheus-local]" in out
    log = (checkout / ".cache" / "local" / "up.log").read_text()
    assert log == "ok: [morpheus-local]\nplaybooks/site.yml -i inventories/local --flush-cache\n"


def test_a_failed_playbook_names_its_exit_code_and_log(checkout):
    fake_ansible_playbook(checkout, "echo 'fatal: [morpheus-local]: FAILED!'; exit 2")
    with pytest.raises(
        LocalError, match=r"failed \(exit 2\); its output is in .cache/local/up.log"
    ) as caught:
        playbook.run_playbook(INVENTORY)
    assert "rerun `make up`" in caught.value.hint


def test_a_checkout_without_the_playbook_says_so(checkout):
    (checkout / "playbooks" / "site.yml").unlink()
    with pytest.raises(LocalError, match=r"playbooks/site\.yml is missing from this checkout"):
        playbook.run_playbook(INVENTORY)


def test_the_ca_is_copied_from_the_acme_host(checkout, fake_docker):
    calls = fake_docker({})
    playbook.copy_ca(INVENTORY)
    ca = str(checkout / ".cache" / "local" / "ca.pem")
    assert calls == [("cp", "morpheus-local:/etc/pebble/issuing-root.pem", ca)]


def test_a_ca_that_cannot_be_copied_asks_for_another_run(checkout, fake_docker):
    fake_docker({"cp": (1, "", "Could not find the file /etc/pebble/issuing-root.pem")})
    with pytest.raises(LocalError, match="could not copy the local CA out of morpheus-local"):
        playbook.copy_ca(INVENTORY)
