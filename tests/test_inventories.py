"""The inventories: which value wins at each level, and what playbooks/preflight.yml refuses.

Every command runs the real Ansible tools (ansible-inventory, ansible, ansible-playbook)
with the repository's ansible.cfg. The precedence tests work on a copy of an
environment's inventory (symlinks kept) with a probe variable added at each level, so
the real inventories stay clean.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ["production", "staging", "local"]
REQUIRED_GROUPS = ["edge", "api", "workers", "postgres", "redis"]
PREFLIGHT = ROOT / "playbooks" / "preflight.yml"

# Lowest to highest; probe_N is set at levels 1..N, so level N must win for it.
LEVELS = [
    "role defaults",
    "top-level group_vars/all",
    "inventory group_vars/all",
    "inventory group_vars/api",
    "host_vars",
    "extra vars",
]


# The Ansible tools beside the interpreter running the tests (the virtualenv's), found
# without the virtualenv's bin on PATH, as the service's tests find theirs.
VENV_BIN = Path(sys.executable).parent


def ansible(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        **env,
    }
    command = [str(VENV_BIN / args[0]) if (VENV_BIN / args[0]).exists() else args[0], *args[1:]]
    return subprocess.run(
        command,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@functools.cache
def _listed(inventory: Path) -> str:
    result = ansible("ansible-inventory", "-i", str(inventory), "--list")
    assert result.returncode == 0, result.stderr
    return result.stdout


def inventory_list(inventory: Path) -> dict:
    """`ansible-inventory --list` of an inventory, run once per inventory path: the real
    inventories are read by many tests, and every copy lives in its own tmp_path."""
    return json.loads(_listed(inventory))


def flat(output: str) -> str:
    """Ansible folds long messages over several lines: compare on one line."""
    return " ".join(output.replace("''", "'").split())


def copy_environment(env: str, dest: Path) -> Path:
    """The environment's inventory and the platform defaults, laid out as in the repository."""
    shutil.copytree(ROOT / "group_vars", dest / "group_vars", symlinks=True)
    shutil.copytree(ROOT / "inventories" / env, dest / "inventories" / env, symlinks=True)
    return dest / "inventories" / env


def write_yaml(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))


def first_host(inventory: dict, group: str) -> str:
    hosts = hosts_of(inventory, group)
    assert hosts, f"group {group} has no hosts"
    return hosts[0]


def hosts_of(inventory: dict, group: str) -> list[str]:
    entry = inventory.get(group, {})
    found = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        found += [h for h in hosts_of(inventory, child) if h not in found]
    return found


# --- the real inventories -------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_required_group_has_hosts_and_a_monitoring_group(env):
    inventory = inventory_list(ROOT / "inventories" / env)
    for group in REQUIRED_GROUPS:
        assert hosts_of(inventory, group), f"{env}: group {group} is empty"
    assert "monitoring" in inventory["all"]["children"], f"{env}: no monitoring group"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_platform_defaults_load_under_the_environment_values(env):
    """Top-level group_vars/all reaches every host; the environment's values win over it."""
    hostvars = inventory_list(ROOT / "inventories" / env)["_meta"]["hostvars"]
    assert hostvars
    platform = yaml.safe_load((ROOT / "group_vars" / "all" / "main.yml").read_text())
    for host, variables in hostvars.items():
        # set only in the top-level group_vars/all
        assert variables["morpheus_platform_name"] == platform["morpheus_platform_name"], host
        assert variables["docker_log_max_size"] == platform["docker_log_max_size"], host
        # set only by the environment
        assert variables["morpheus_environment"] == env, host
        # set at both levels: the environment wins (local runs Debian's engine)
        expected = "debian" if env == "local" else platform["docker_install_source"]
        assert variables["docker_install_source"] == expected, host


@pytest.mark.parametrize(("env", "maxmemory"), [("production", "2gb"), ("staging", "512mb")])
def test_group_values_reach_only_their_group(env, maxmemory):
    inventory = inventory_list(ROOT / "inventories" / env)
    hostvars = inventory["_meta"]["hostvars"]
    redis_hosts = set(hosts_of(inventory, "redis"))
    for host, variables in hostvars.items():
        assert variables.get("redis_maxmemory") == (maxmemory if host in redis_hosts else None), (
            host
        )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inventory_links_the_platform_defaults_first(env):
    link = ROOT / "inventories" / env / "group_vars" / "all" / "000-platform"
    assert link.is_symlink(), f"{link} must link the top-level group_vars/all"
    assert link.resolve() == (ROOT / "group_vars" / "all").resolve()
    # group_vars/all files load in name order and a later one wins
    names = sorted(p.name for p in link.parent.iterdir())
    assert names[0] == "000-platform", names


def test_no_playbook_group_vars():
    """playbooks/group_vars would load ABOVE the inventory's group_vars/all.

    test_a_playbook_group_vars_link_would_override_the_environment shows what goes
    wrong; this keeps anyone from adding one.
    """
    assert not (ROOT / "playbooks" / "group_vars").exists()
    assert not (ROOT / "playbooks" / "host_vars").exists()


def test_ad_hoc_commands_do_not_load_the_top_level_group_vars_as_playbook_vars(tmp_path):
    """Why ansible.cfg sets playbook_dir = playbooks.

    ansible and ansible-inventory treat their playbook dir (the current folder unless
    set) like a playbook's: a group_vars/ there loads above the inventory's
    group_vars/all. From the repository's root that would be the platform defaults.
    """
    inventory = copy_environment("local", tmp_path)
    command = ("ansible-inventory", "-i", str(inventory), "--host", "morpheus-local")
    trap = ansible(*command, cwd=tmp_path, ANSIBLE_PLAYBOOK_DIR=str(tmp_path))
    assert json.loads(trap.stdout)["docker_install_source"] == "official", trap.stderr
    configured = ansible(*command, cwd=tmp_path)
    assert json.loads(configured.stdout)["docker_install_source"] == "debian", configured.stderr


# --- precedence, level by level -------------------------------------------------------


def probe_values(level: int) -> dict:
    """probe_N for every N >= level, set to the level's name."""
    return {f"probe_{n}": LEVELS[level - 1] for n in range(level, len(LEVELS) + 1)}


PROBE_PLAY = """---
- name: Show the probe variables
  hosts: {host}
  gather_facts: false
  roles:
    - role: precedence_probe
"""


@pytest.fixture(params=ENVIRONMENTS)
def probed(request, tmp_path):
    """A copy of an environment with probe_1..6 set at the six levels."""
    env = request.param
    inventory = copy_environment(env, tmp_path)
    # The copy has the real inventory's hosts (probe values change no host).
    host = first_host(inventory_list(ROOT / "inventories" / env), "api")
    role = tmp_path / "roles" / "precedence_probe"
    write_yaml(role / "defaults" / "main.yml", probe_values(1))
    write_yaml(role / "meta" / "main.yml", {"galaxy_info": {"author": "test"}, "dependencies": []})
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text(
        "---\n- name: Probe\n  ansible.builtin.debug:\n"
        '    msg: "{{ {' + ", ".join(f"'probe_{n}': probe_{n}" for n in range(1, 7)) + '} }}"\n'
    )
    write_yaml(tmp_path / "group_vars" / "all" / "zz-probe.yml", probe_values(2))
    write_yaml(inventory / "group_vars" / "all" / "zz-probe.yml", probe_values(3))
    api_vars = inventory / "group_vars" / "api"
    write_yaml(api_vars / "zz-probe.yml", probe_values(4))
    write_yaml(inventory / "host_vars" / f"{host}.yml", probe_values(5))
    playbook_dir = tmp_path / "probe"
    playbook_dir.mkdir()
    (playbook_dir / "probe.yml").write_text(PROBE_PLAY.format(host=host))
    return env, inventory, host, tmp_path


def run_probe(inventory: Path, playbook: Path, roles: Path) -> dict:
    """The probe role's message, read from the json callback's report."""
    result = ansible(
        "ansible-playbook",
        "-i",
        str(inventory),
        str(playbook),
        "-e",
        json.dumps({"probe_6": LEVELS[5]}),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        # profile_tasks (ansible.cfg) would print after the JSON report; junit writes files only
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit",
        JUNIT_OUTPUT_DIR=str(roles.parent / "junit"),
        ANSIBLE_ROLES_PATH=str(roles),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = json.loads(result.stdout)
    task = report["plays"][0]["tasks"][-1]
    ((_, outcome),) = task["hosts"].items()
    return outcome["msg"]


def test_each_level_wins_over_the_one_below(probed):
    env, inventory, _host, tmp_path = probed
    values = run_probe(inventory, tmp_path / "probe" / "probe.yml", tmp_path / "roles")
    assert values == {f"probe_{n}": LEVELS[n - 1] for n in range(1, 7)}, env


def test_ansible_inventory_sees_the_inventory_levels(probed):
    env, inventory, host, _ = probed
    result = ansible("ansible-inventory", "-i", str(inventory), "--host", host)
    assert result.returncode == 0, result.stderr
    variables = json.loads(result.stdout)
    # role defaults and extra vars belong to plays: ansible-inventory shows levels 2-5
    assert "probe_1" not in variables
    assert {f"probe_{n}": variables[f"probe_{n}"] for n in range(2, 7)} == {
        "probe_2": LEVELS[1],
        "probe_3": LEVELS[2],
        "probe_4": LEVELS[3],
        "probe_5": LEVELS[4],
        "probe_6": LEVELS[4],
    }, env


def test_ad_hoc_extra_vars_win_over_host_vars(probed):
    _env, inventory, host, _ = probed
    result = ansible(
        "ansible", "-i", str(inventory), host, "-m", "ansible.builtin.debug", "-a", "var=probe_6",
        "-e", "probe_6=from-the-command-line",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "probe_6: from-the-command-line" in result.stdout, result.stdout
    result = ansible(
        "ansible", "-i", str(inventory), host, "-m", "ansible.builtin.debug", "-a", "var=probe_5"
    )  # fmt: skip
    assert f"probe_5: {LEVELS[4]}" in result.stdout, result.stdout


def test_a_playbook_group_vars_link_would_override_the_environment(probed):
    """Why the platform defaults are not linked beside the playbooks.

    Ansible loads playbook group_vars/all above the inventory's group_vars/all: a
    `playbooks/group_vars -> ../group_vars` link would let a platform default beat
    the environment's value.
    """
    _env, inventory, _host, tmp_path = probed
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "group_vars").symlink_to("../group_vars")
    shutil.copy(tmp_path / "probe" / "probe.yml", playbooks / "probe.yml")
    values = run_probe(inventory, playbooks / "probe.yml", tmp_path / "roles")
    assert values["probe_3"] == LEVELS[1], "playbook group_vars/all no longer beats the inventory's"


# --- playbooks/preflight.yml ----------------------------------------------------------


def preflight(inventory: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return ansible("ansible-playbook", "-i", str(inventory), str(PREFLIGHT), cwd=cwd)


@pytest.mark.parametrize("env", ["production", "staging"])
def test_preflight_refuses_the_examples_naming_variables_and_files(env):
    result = preflight(Path("inventories") / env)
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert "value(s) to fix (a placeholder CHANGE_ME left" in output, output
    main = f"inventories/{env}/group_vars/all/main.yml"
    hosts = f"inventories/{env}/hosts.yml"
    for expected in (
        re.compile(re.escape(main) + r":\d+: nginx_domain = 'CHANGE_ME\."),
        re.compile(re.escape(main) + r":\d+: letsencrypt_email = 'CHANGE_ME@"),
        re.compile(re.escape(main) + r":\d+: common_admin_users\[0\]\.ssh_keys\[0\] = "),
        re.compile(re.escape(hosts) + rf":\d+: ansible_host = 'CHANGE_ME' \(hosts: {env}-db-1\)"),
        re.compile(
            re.escape(f"inventories/{env}/group_vars/all/vault.yml")
            # (among the others that need it, in name order)
            + r": vault_redis_app_password is not defined, needed by "
            + r"([a-z_]+, )*redis_app_password\b"
        ),
    ):
        assert expected.search(output), f"{expected.pattern} not in: {output}"
    # a value that only reaches a variable through a template is not listed again
    assert "postgresql_private_address" not in output


def test_preflight_passes_on_local():
    result = preflight(Path("inventories") / "local")
    output = flat(result.stdout)
    assert result.returncode == 0, output + result.stderr
    assert "1 host(s), environment local; no placeholder left" in output


def test_local_multihost_shares_the_local_values():
    """The multi-host layout passes the preflight with the local default's values."""
    result = preflight(Path("inventories") / "local-multihost")
    output = flat(result.stdout)
    assert result.returncode == 0, output + result.stderr
    assert "6 host(s), environment local; no placeholder left" in output
    inventory = inventory_list(ROOT / "inventories" / "local-multihost")
    assert hosts_of(inventory, "api") == ["morpheus-local-api-1", "morpheus-local-api-2"]
    assert hosts_of(inventory, "acme") == hosts_of(inventory, "edge") == ["morpheus-local-edge"]
    assert hosts_of(inventory, "monitoring") == ["morpheus-local-monitor"]


# The database password filled_production's test-only vault gives the service.
FILLED_APP_PASSWORD = "test-only-vault_postgresql_app_password"


def filled_production(tmp_path: Path) -> Path:
    """A copy of the production example with every placeholder filled in (hosts 10.10.0.N
    in the order hosts.yml names them) and a test-only vault."""
    inventory = copy_environment("production", tmp_path)
    hosts_file = inventory / "hosts.yml"
    text = hosts_file.read_text()
    for number in range(1, 100):
        if "CHANGE_ME" not in text:
            break
        text = text.replace("CHANGE_ME", f"10.10.0.{number}", 1)
    hosts_file.write_text(text)
    main = inventory / "group_vars" / "all" / "main.yml"
    main.write_text(
        main.read_text()
        .replace("CHANGE_ME.example.org", "comics.example.org")
        .replace("CHANGE_ME@example.org", "ops@example.org")
        .replace(
            "CHANGE_ME/16 (the hosts' private network, for example 10.10.0.0/16)", "10.10.0.0/16"
        )
        .replace("CHANGE_ME ssh-ed25519 AAAA... admin@laptop", "ssh-ed25519 AAAAC3Nz test-only")
        .replace("CHANGE_ME", "deploy")
    )
    example = inventory / "group_vars" / "all" / "vault.yml.example"
    vault = yaml.safe_load(example.read_text())
    # test-only values, in a temporary copy that is never committed
    write_yaml(example.with_name("vault.yml"), {key: f"test-only-{key}" for key in vault})
    return inventory


def test_preflight_passes_once_every_placeholder_is_replaced(tmp_path):
    """The production example, filled in: it passes, and one placeholder put back is named."""
    inventory = filled_production(tmp_path)
    result = preflight(inventory)
    assert result.returncode == 0, flat(result.stdout + result.stderr)

    write_yaml(inventory / "host_vars" / "production-redis-1.yml", {"redis_maxmemory": "CHANGE_ME"})
    result = preflight(inventory)
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0
    assert "1 value(s) to fix (a placeholder CHANGE_ME left" in output, output
    expected = "host_vars/production-redis-1.yml:2: redis_maxmemory = 'CHANGE_ME'"
    assert f"{expected} (hosts: production-redis-1)" in output, output


def test_preflight_names_a_template_that_fails(tmp_path):
    inventory = copy_environment("local", tmp_path)
    values = inventory / "group_vars" / "all" / "main.yml"
    lines = values.read_text().splitlines()
    values.write_text("\n".join([*lines, 'nginx_api_name: "api.{{ nginx_domain }"', ""]))
    result = preflight(inventory)
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert (
        f"group_vars/all/main.yml:{len(lines) + 1}: nginx_api_name does not template: "
        "Syntax error in template" in output
    ), output


# --- malformed inventories ------------------------------------------------------------


LOCAL_HOSTS = {
    "all": {
        "children": {
            "edge": {"hosts": {"edge-1": {"morpheus_private_address": "10.0.0.1"}}},
            "api": {"hosts": {"api-1": {"morpheus_private_address": "10.0.0.2"}}},
            "workers": {"hosts": {"worker-1": {"morpheus_private_address": "10.0.0.3"}}},
            "postgres": {"hosts": {"db-1": {"morpheus_private_address": "10.0.0.4"}}},
            "redis": {"hosts": {"redis-1": {"morpheus_private_address": "10.0.0.5"}}},
            "monitoring": {"hosts": {}},
        }
    }
}


def broken_inventory(tmp_path: Path, change) -> Path:
    inventory = copy_environment("local", tmp_path)
    hosts = json.loads(json.dumps(LOCAL_HOSTS))
    change(hosts["all"]["children"])
    write_yaml(inventory / "hosts.yml", hosts)
    return inventory


def test_a_valid_layout_passes(tmp_path):
    result = preflight(broken_inventory(tmp_path, lambda groups: None))
    assert result.returncode == 0, flat(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda g: g["redis"].update(hosts={}),
            "group 'redis' has no hosts: add one under all.children.redis.hosts in hosts.yml",
        ),
        (
            lambda g: g.update(backup={"hosts": {"stray-1": {}}}),
            "host 'stray-1' is in none of the platform's groups (edge, api, workers, postgres, "
            "redis, monitoring, acme, local): put it in one in hosts.yml, or remove it",
        ),
        (
            lambda g: g["postgres"]["hosts"]["db-1"].clear(),
            "host 'db-1' (group postgres) has no morpheus_private_address: set it in hosts.yml "
            "or host_vars/db-1.yml",
        ),
        (
            lambda g: g["redis"]["hosts"]["redis-1"].update(morpheus_private_address="10.0.0.300"),
            "host 'redis-1' (group redis): morpheus_private_address '10.0.0.300' is not an IP "
            "address",
        ),
        (
            lambda g: g["postgres"]["hosts"]["db-1"].update(morpheus_private_address="8.8.8.8"),
            "host 'db-1' (group postgres): morpheus_private_address '8.8.8.8' is not a private "
            "address",
        ),
    ],
    ids=["empty-group", "host-in-no-group", "no-private-address", "bad-address", "public-address"],
)
def test_a_broken_layout_is_refused(tmp_path, change, message):
    result = preflight(broken_inventory(tmp_path, change))
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert "is not usable:" in output and message in output, output


def test_bad_yaml_is_refused_with_the_parse_error(tmp_path):
    inventory = copy_environment("local", tmp_path)
    (inventory / "hosts.yml").write_text("all:\n  children:\n    edge:\n      hosts: [unclosed\n")
    result = preflight(inventory)
    output = flat(result.stdout + result.stderr)
    assert result.returncode != 0, output
    # Ansible's own warning names the file and the YAML error...
    assert "hosts.yml" in output and "Unable to parse" in output, output
    # ...and the preflight stops instead of running on no hosts.
    assert "the inventory has no hosts: did hosts.yml parse?" in output, output


def test_the_firewall_opens_the_exporters_to_the_monitoring_host(tmp_path):
    """With the local host in the monitoring group too (a second inventory source adds
    it), its firewall rules name its address and every exporter's port, the workers'
    metrics included."""
    monitored = tmp_path / "monitored.yml"
    write_yaml(monitored, {"all": {"children": {"monitoring": {"hosts": {"morpheus-local": {}}}}}})
    result = ansible(
        "ansible", "-i", "inventories/local", "-i", str(monitored), "morpheus-local",
        "-m", "ansible.builtin.debug", "-a", "var=common_firewall_extra_rules",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rules = result.stdout
    assert "172.30.10.10/32" in rules, rules
    assert "\\\\1" not in rules, rules
    for port in ("9100", "9101", "9113", "9121", "9127", "9187", "9201"):
        assert port in rules, f"port {port} not opened: {rules}"


def host_value(inventory: Path, host: str, variable: str):
    """A variable of a host as Ansible templates it (ad hoc, JSON output)."""
    result = ansible(
        "ansible", "-i", str(inventory), host, "-m", "ansible.builtin.debug",
        "-a", f"var={variable}",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # The JSON document, between the task-timing callback's lines.
    start = result.stdout.index("\n{") + 1
    answer, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    return answer["plays"][0]["tasks"][0]["hosts"][host][variable]


def test_production_publishes_grafana_on_the_edge_from_the_monitoring_host(tmp_path):
    inventory = filled_production(tmp_path)
    listed = inventory_list(inventory)
    monitor = listed["_meta"]["hostvars"]["production-monitor-1"]["morpheus_private_address"]
    edge = listed["_meta"]["hostvars"]["production-edge-1"]["morpheus_private_address"]
    assert host_value(inventory, "production-edge-1", "nginx_monitor_name") == (
        "monitor.comics.example.org"
    )
    assert host_value(inventory, "production-edge-1", "nginx_monitor_upstream") == f"{monitor}:3000"
    assert "monitor.comics.example.org" in host_value(
        inventory, "production-edge-1", "letsencrypt_domains"
    )
    # Grafana's port opens to the edge only, on the monitoring host alone.
    rules = host_value(inventory, "production-monitor-1", "common_firewall_extra_rules")
    assert f"ip saddr {{ {edge}/32 }} tcp dport {{ 3000 }} accept" in rules, rules
    api_rules = host_value(inventory, "production-api-1", "common_firewall_extra_rules")
    assert not any("3000" in rule for rule in api_rules), api_rules


def test_the_local_layouts_run_no_grafana():
    assert host_value(ROOT / "inventories" / "local", "morpheus-local", "nginx_monitor_name") == ""


def test_the_workers_an_autoscaler_may_add_are_scraped_and_let_through():
    """The local layouts scale each worker host from one worker to three: Prometheus
    scrapes, and the firewall opens to the monitoring host, the metrics port of each in
    both slots. Production, without autoscaling, keeps one a slot."""
    local = ROOT / "inventories" / "local-multihost"
    host = "morpheus-local-worker-1"
    assert host_value(local, host, "worker_autoscale_enabled") is True
    ports = host_value(local, host, "prometheus_worker_ports")
    assert ports == [9101, 9102, 9103, 9201, 9202, 9203]
    rules = " ".join(host_value(local, host, "common_firewall_extra_rules"))
    for port in ("9102", "9103", "9202", "9203"):
        assert port in rules, rules


def test_production_runs_as_many_workers_as_worker_containers(tmp_path):
    inventory = filled_production(tmp_path)
    assert host_value(inventory, "production-worker-1", "prometheus_worker_ports") == [9101, 9201]


def test_production_streams_to_a_hot_standby_and_reads_from_it(tmp_path):
    """The second postgres host is a standby of the first: it streams through its slot,
    each host's PgBouncer serves the database from the primary and its read-only copy
    from the standby, and the service is told where the read-only copy is."""
    inventory = filled_production(tmp_path)
    primary = host_value(inventory, "production-db-1", "morpheus_private_address")
    standby = host_value(inventory, "production-db-2", "morpheus_private_address")
    assert host_value(inventory, "production-db-1", "postgresql_primary_host") == ""
    assert host_value(inventory, "production-db-2", "postgresql_primary_host") == "production-db-1"
    assert host_value(inventory, "production-db-2", "postgresql_primary_address") == primary
    assert host_value(inventory, "production-db-1", "postgresql_replication_sources") == [
        primary,
        standby,
    ]
    users = host_value(inventory, "production-db-1", "postgresql_users")
    assert [(u["name"], u.get("role_attr_flags", "")) for u in users] == [
        ("morpheus", ""),
        ("replicator", "REPLICATION"),
    ]
    assert host_value(inventory, "production-db-1", "pgbouncer_databases") == [
        {"name": "morpheus", "host": "127.0.0.1"},
        {"name": "morpheus_ro", "dbname": "morpheus", "host": standby},
    ]
    assert host_value(inventory, "production-db-2", "pgbouncer_databases") == [
        {"name": "morpheus", "host": primary},
        {"name": "morpheus_ro", "dbname": "morpheus", "host": "127.0.0.1"},
    ]
    hba = host_value(inventory, "production-db-2", "postgresql_hba_entries")
    assert [entry["address"] for entry in hba] == [f"{primary}/32", f"{standby}/32"]
    # Backups: pgBackRest's stanza and the nightly dump on the primary only.
    assert host_value(inventory, "production-db-1", "pgbackrest_primary") is True
    assert host_value(inventory, "production-db-2", "pgbackrest_primary") is False
    assert host_value(inventory, "production-db-2", "backup_postgresql_databases") == []
    secrets = host_value(inventory, "production-api-1", "app_settings_secrets")
    assert url_hosts(secrets["MORPHEUS_DATABASE_READ_URL"]) == (
        "morpheus_ro",
        [f"{standby}:6432", f"{primary}:6432"],
    )


def url_hosts(url: str) -> tuple[str, list[str]]:
    """The database a service URL names and its hosts, in the order libpq tries them;
    its user, password and connect_timeout checked on the way."""
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg", url
    assert parts.netloc == "morpheus:" + quote(FILLED_APP_PASSWORD, safe="") + "@", url
    query = parse_qs(parts.query)
    assert query["connect_timeout"] == ["3"], url
    assert set(query) == {"host", "connect_timeout"}, url
    return parts.path.removeprefix("/"), query["host"]


def test_production_names_every_pgbouncer_the_primarys_first(tmp_path):
    """The service reaches the primary through any postgres host's PgBouncer: the
    primary's first, the standby's next, so that losing either host needs no redeploy.
    Its reads try the standby's first, where the read-only copy is local."""
    inventory = filled_production(tmp_path)
    primary = host_value(inventory, "production-db-1", "morpheus_private_address")
    standby = host_value(inventory, "production-db-2", "morpheus_private_address")
    for host in ("production-api-1", "production-worker-2"):
        secrets = host_value(inventory, host, "app_settings_secrets")
        assert url_hosts(secrets["MORPHEUS_DATABASE_URL"]) == (
            "morpheus",
            [f"{primary}:6432", f"{standby}:6432"],
        )
        assert url_hosts(secrets["MORPHEUS_DATABASE_READ_URL"]) == (
            "morpheus_ro",
            [f"{standby}:6432", f"{primary}:6432"],
        )


def test_a_fenced_host_is_left_out_of_the_service_urls(tmp_path):
    """Three postgres hosts after a failover: the first fenced, the second the primary,
    the third its standby. Neither URL names the fenced host."""
    inventory = filled_production(tmp_path)
    hosts_file = inventory / "hosts.yml"
    layout = yaml.safe_load(hosts_file.read_text())
    layout["all"]["children"]["postgres"]["hosts"]["production-db-3"] = {
        "ansible_host": "10.10.0.99",
        "morpheus_private_address": "10.10.0.99",
    }
    write_yaml(hosts_file, layout)
    write_yaml(
        inventory / "group_vars" / "all" / "zz-failover.yml",
        {
            "morpheus_postgres_primary": "production-db-2",
            "morpheus_postgres_fenced": ["production-db-1"],
        },
    )
    primary = host_value(inventory, "production-db-2", "morpheus_private_address")
    secrets = host_value(inventory, "production-api-1", "app_settings_secrets")
    assert url_hosts(secrets["MORPHEUS_DATABASE_URL"]) == (
        "morpheus",
        [f"{primary}:6432", "10.10.0.99:6432"],
    )
    # A migration's dump, and its restore, are taken on the primary too.
    assert host_value(inventory, "production-api-1", "migrations_postgres_host") == (
        "production-db-2"
    )
    assert url_hosts(secrets["MORPHEUS_DATABASE_READ_URL"]) == (
        "morpheus_ro",
        ["10.10.0.99:6432", f"{primary}:6432"],
    )
    # With its standby fenced too, the primary is alone: one host, and no read URL.
    write_yaml(
        inventory / "group_vars" / "all" / "zz-failover.yml",
        {
            "morpheus_postgres_primary": "production-db-2",
            "morpheus_postgres_fenced": ["production-db-1", "production-db-3"],
        },
    )
    secrets = host_value(inventory, "production-api-1", "app_settings_secrets")
    assert url_hosts(secrets["MORPHEUS_DATABASE_URL"]) == ("morpheus", [f"{primary}:6432"])
    assert "MORPHEUS_DATABASE_READ_URL" not in secrets


def test_a_single_postgres_host_has_no_standby():
    assert host_value(Path("inventories/local"), "morpheus-local", "postgresql_primary_host") == ""
    users = host_value(Path("inventories/local"), "morpheus-local", "postgresql_users")
    assert [user["name"] for user in users] == ["morpheus"]
    secrets = host_value(Path("inventories/local"), "morpheus-local", "app_settings_secrets")
    assert "MORPHEUS_DATABASE_READ_URL" not in secrets
    # One postgres host: the URL names its PgBouncer alone.
    url = urlsplit(secrets["MORPHEUS_DATABASE_URL"])
    assert (url.path, parse_qs(url.query)) == (
        "/morpheus",
        {"host": ["172.30.10.10:6432"], "connect_timeout": ["3"]},
    )
    assert host_value(Path("inventories/local"), "morpheus-local", "pgbouncer_databases") == [
        {"name": "morpheus", "host": "127.0.0.1"}
    ]
