"""The monitoring roles refuse bad input before they touch a host.

The roles' preflight tasks run against the controller itself (connection local, no
change made): an Alertmanager receiver without its URL, and a Prometheus scrape job
naming a group the inventory lacks, each stop the play with a message saying what to fix.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def run_preflight(tmp_path: Path, role: str, variables: dict) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "mon-1": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "morpheus_private_address": "127.0.0.1",
                        }
                    },
                    "children": {"monitoring": {"hosts": {"mon-1": {}}}, "edge": {"hosts": {}}},
                }
            }
        )
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "monitoring",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Preflight",
                            "ansible.builtin.include_role": {
                                "name": role,
                                "tasks_from": "preflight",
                            },
                        }
                    ],
                }
            ]
        )
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(ROOT / "filter_plugins"),
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), "-e", f"@{extra}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=300,
    )


def test_alertmanager_refuses_a_webhook_without_its_url(tmp_path):
    result = run_preflight(
        tmp_path,
        "alertmanager",
        {"alertmanager_receivers": [{"name": "pager", "type": "webhook", "severities": ["page"]}]},
    )
    assert result.returncode != 0, result.stdout
    assert "receiver pager needs" in result.stdout
    assert "a url for a webhook (set it in the vault)" in result.stdout


def test_alertmanager_accepts_complete_receivers(tmp_path):
    result = run_preflight(
        tmp_path,
        "alertmanager",
        {
            "alertmanager_receivers": [
                {"name": "pager", "type": "webhook", "url": "https://hooks.example.org/x"},
                {"name": "ops", "type": "email", "to": "ops@example.org"},
            ],
            "alertmanager_smtp_smarthost": "smtp.example.org:587",
            "alertmanager_smtp_from": "alerts@example.org",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hooks.example.org" not in result.stdout


@pytest.mark.parametrize(
    ("receivers", "message"),
    [
        ([{"name": "ops", "type": "email"}], "receiver ops needs"),
        ([{"name": "x", "type": "slack", "url": "https://h"}], "receiver x needs"),
        (
            [{"name": "ops", "type": "email", "to": "ops@example.org"}],
            'An email receiver needs alertmanager_smtp_smarthost ("host:port"',
        ),
    ],
)
def test_alertmanager_refuses_incomplete_receivers(tmp_path, receivers, message):
    result = run_preflight(tmp_path, "alertmanager", {"alertmanager_receivers": receivers})
    assert result.returncode != 0, result.stdout
    assert message in result.stdout


def test_prometheus_refuses_a_job_on_a_group_the_inventory_lacks(tmp_path):
    result = run_preflight(
        tmp_path,
        "prometheus",
        {"prometheus_scrape_jobs": [{"name": "node", "group": "monitors", "port": 9100}]},
    )
    assert result.returncode != 0, result.stdout
    assert "group 'monitors' is not an inventory group" in result.stdout
