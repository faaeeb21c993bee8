"""Unit tests of filter_plugins/monitoring.py."""

import pytest
from ansible.errors import AnsibleFilterError
from monitoring import FilterModule, monitoring_scrape_configs

GROUPS = {
    "all": ["edge-1", "api-1", "db-1", "mon-1"],
    "ungrouped": [],
    "edge": ["edge-1"],
    "api": ["api-1"],
    "postgres": ["db-1"],
    "monitoring": ["mon-1"],
    "redis": [],
}
HOSTVARS = {
    "edge-1": {"morpheus_private_address": "10.0.0.1", "ansible_host": "203.0.113.1"},
    "api-1": {
        "morpheus_private_address": "10.0.0.2",
        "backend_bind_address": "10.0.1.2",
        "prometheus_backend_ports": [8000, 8001, 8100, 8101],
    },
    "db-1": {"ansible_host": "db-1.example.org"},
    "mon-1": {"morpheus_private_address": "fd00::4"},
}


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        (None, []),
        ([], []),
        (
            [{"name": "node", "group": "all", "port": 9100}],
            [
                {
                    "job_name": "node",
                    "static_configs": [
                        {"targets": ["10.0.0.1:9100"], "labels": {"host": "edge-1"}},
                        {"targets": ["10.0.0.2:9100"], "labels": {"host": "api-1"}},
                        {"targets": ["db-1.example.org:9100"], "labels": {"host": "db-1"}},
                        {"targets": ["[fd00::4]:9100"], "labels": {"host": "mon-1"}},
                    ],
                }
            ],
        ),
        (
            [
                {
                    "name": "morpheus_api",
                    "group": "api",
                    "ports_var": "prometheus_backend_ports",
                    "address_var": "backend_bind_address",
                    "metrics_path": "/metrics",
                }
            ],
            [
                {
                    "job_name": "morpheus_api",
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {
                            "targets": [
                                "10.0.1.2:8000",
                                "10.0.1.2:8001",
                                "10.0.1.2:8100",
                                "10.0.1.2:8101",
                            ],
                            "labels": {"host": "api-1"},
                        }
                    ],
                }
            ],
        ),
        # A host without the ports variable gets the job's default ports.
        (
            [
                {
                    "name": "morpheus_worker",
                    "group": "edge",
                    "ports_var": "prometheus_worker_ports",
                    "default_ports": [9101, "9201"],
                }
            ],
            [
                {
                    "job_name": "morpheus_worker",
                    "static_configs": [
                        {
                            "targets": ["10.0.0.1:9101", "10.0.0.1:9201"],
                            "labels": {"host": "edge-1"},
                        }
                    ],
                }
            ],
        ),
        # An empty group (redis here) keeps its job, with no targets.
        (
            [{"name": "redis", "group": "redis", "port": "9121"}],
            [{"job_name": "redis", "static_configs": []}],
        ),
        # A host whose ports list is empty (metrics off) has no target.
        (
            [{"name": "w", "group": "edge", "ports_var": "none", "default_ports": []}],
            [{"job_name": "w", "static_configs": []}],
        ),
    ],
)
def test_scrape_configs(jobs, expected):
    assert monitoring_scrape_configs(jobs, GROUPS, HOSTVARS) == expected


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (
            [{"name": "node", "group": "monitors", "port": 9100}],
            "prometheus_scrape_jobs[0] (node): group 'monitors' is not an inventory group "
            "(the inventory has: all, api, edge, monitoring, postgres, redis); add the group "
            "to the inventory or point the job at one of these",
        ),
        ("node", "prometheus_scrape_jobs: 'node' must be a list of jobs"),
        (["node"], "prometheus_scrape_jobs[0]: 'node' is not a mapping (name, group, port)"),
        (
            [{"group": "all", "port": 1}],
            "prometheus_scrape_jobs[0]: 'name' is required (a non-empty string)",
        ),
        (
            [{"name": "n", "port": 1}],
            "prometheus_scrape_jobs[0]: 'group' is required (a non-empty string)",
        ),
        (
            [{"name": "n", "group": "all"}],
            "prometheus_scrape_jobs[0] (n): set exactly one of 'port' and 'ports_var'",
        ),
        (
            [{"name": "n", "group": "all", "port": 1, "ports_var": "x"}],
            "prometheus_scrape_jobs[0] (n): set exactly one of 'port' and 'ports_var'",
        ),
        (
            [{"name": "n", "group": "all", "port": 0}],
            "prometheus_scrape_jobs[0] (n): port 0 is out of range (1-65535)",
        ),
        (
            [{"name": "n", "group": "all", "port": "http"}],
            "prometheus_scrape_jobs[0] (n): port 'http' is not a port number",
        ),
        (
            [{"name": "n", "group": "all", "port": 1}, {"name": "n", "group": "edge", "port": 2}],
            "prometheus_scrape_jobs[1] (n): job name 'n' is used twice",
        ),
        (
            [{"name": "n", "group": "all", "port": 1, "labels": {}}],
            "prometheus_scrape_jobs[0]: unknown keys ['labels']",
        ),
        (
            [{"name": "a", "group": "api", "ports_var": "backend_bind_address"}],
            "prometheus_scrape_jobs[0] (a), host api-1, backend_bind_address: ports '10.0.1.2' "
            "must be a list of port numbers",
        ),
    ],
)
def test_scrape_configs_refuses(jobs, message):
    with pytest.raises(AnsibleFilterError) as error:
        monitoring_scrape_configs(jobs, GROUPS, HOSTVARS)
    assert message in str(error.value)


def test_filter_is_registered():
    assert FilterModule().filters()["monitoring_scrape_configs"] is monitoring_scrape_configs
