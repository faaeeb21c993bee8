"""Role grafana without Grafana: preflight's refusals, and the provisioning files it writes.

Grafana cannot be installed on the machines the project is tested on (its apt repository
is out of reach), so these run the role's preflight and ``tasks_from: provision`` against
the controller itself (connection local), the files going to a temporary folder.
"""

import grp
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "grafana"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
GOOD = {"grafana_admin_password": "a-test-only-password"}


def play(tmp_path: Path, tasks_from: str, variables: dict, monitoring: bool = True):
    """Run one task file of the role on a local host 'mon-1'; the completed process."""
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "morpheus_private_address": "10.0.0.9",
    }
    inventory = {
        "all": {
            "hosts": {"mon-1": host},
            "children": {"monitoring": {"hosts": {"mon-1": {}} if monitoring else {}}},
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    include = {"name": "grafana", "tasks_from": tasks_from}
    tasks = [{"name": f"Role grafana, {tasks_from}", "ansible.builtin.include_role": include}]
    (tmp_path / "play.yml").write_text(
        yaml.safe_dump([{"hosts": "mon-1", "gather_facts": False, "tasks": tasks}])
    )
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
    }
    command = [str(ANSIBLE_PLAYBOOK), "-i", "hosts.yml", "play.yml", "-e", "@vars.json"]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300
    )


def changed(result: subprocess.CompletedProcess) -> int:
    match = re.search(r"mon-1\s*:.*changed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return int(match.group(1))


def test_preflight_refuses_an_empty_admin_password(tmp_path):
    result = play(tmp_path, "preflight", {"grafana_admin_password": ""})
    assert result.returncode != 0
    assert "grafana_admin_password is empty" in result.stdout
    assert "vault" in result.stdout


def test_preflight_refuses_to_listen_on_every_interface(tmp_path):
    every = "0.0.0.0"  # noqa: S104 - the address preflight must refuse
    result = play(tmp_path, "preflight", {**GOOD, "grafana_listen_address": every})
    assert result.returncode != 0
    assert "grafana_listen_address (0.0.0.0) would open Grafana on every" in result.stdout


def test_preflight_says_what_the_data_sources_need_without_a_monitoring_host(tmp_path):
    result = play(tmp_path, "preflight", GOOD, monitoring=False)
    assert result.returncode != 0
    assert "add the Prometheus host to that group, or set grafana_prometheus_url" in result.stdout


def test_preflight_passes_with_a_password_and_the_private_address(tmp_path):
    result = play(tmp_path, "preflight", GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a-test-only-password" not in result.stdout + result.stderr


def test_provision_writes_the_data_sources_and_dashboards_and_is_idempotent(tmp_path):
    target = tmp_path / "target"
    variables = {
        "grafana_provisioning_dir": str(target / "provisioning"),
        "grafana_dashboards_dir": str(target / "dashboards"),
        "grafana_group": grp.getgrgid(os.getgid()).gr_name,
    }
    (target / "dashboards").mkdir(parents=True)
    (target / "dashboards" / "retired.json").write_text("{}")
    first = play(tmp_path, "provision", variables)
    assert first.returncode == 0, first.stdout + first.stderr

    sources = yaml.safe_load((target / "provisioning/datasources/morpheus.yml").read_text())
    by_type = {source["type"]: source for source in sources["datasources"]}
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert by_type["prometheus"]["uid"] == internal["__grafana_prometheus_uid"]
    assert by_type["alertmanager"]["uid"] == internal["__grafana_alertmanager_uid"]
    # On the monitoring group's host, at its private address.
    assert by_type["prometheus"]["url"] == "http://10.0.0.9:9090"
    assert by_type["alertmanager"]["url"] == "http://10.0.0.9:9093"
    assert by_type["prometheus"]["isDefault"] is True
    assert not any(source["editable"] for source in sources["datasources"])

    providers = yaml.safe_load((target / "provisioning/dashboards/morpheus.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"] == str(target / "dashboards")
    assert provider["folder"] == "Morpheus"

    shipped = {p.name: p.read_bytes() for p in (ROLE / "files" / "dashboards").glob("*.json")}
    written = {p.name: p.read_bytes() for p in (target / "dashboards").iterdir()}
    assert written == shipped  # the retired dashboard is gone

    second = play(tmp_path, "provision", variables)
    assert second.returncode == 0, second.stdout + second.stderr
    assert changed(second) == 0, second.stdout
