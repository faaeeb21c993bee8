"""The common role: every point of the base host, checked on the converged instance."""

import json
import re
from pathlib import Path

import pytest
from conftest import assert_service_up, journal

SCENARIO = Path(__file__).resolve().parent.parent

ADMIN_KEY = "/root/id_admin"
SSH = (
    f"ssh -i {ADMIN_KEY} -o BatchMode=yes -o StrictHostKeyChecking=no "
    "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
)


@pytest.mark.parametrize(
    "package",
    ["openssh-server", "nftables", "fail2ban", "unattended-upgrades", "systemd-timesyncd", "curl"],
)
def test_base_packages_installed(host, package):
    assert host.package(package).is_installed


def test_package_lists_fetched_on_a_host_that_had_none(host):
    # The image ships no lists and prepare leaves it so: the role fetched them,
    # though the empty directory's fresh age made apt's cache look valid.
    lists = host.check_output("find /var/lib/apt/lists -name '*_Packages*'")
    assert lists.strip(), "the common role left apt without package lists"


@pytest.mark.parametrize("unit", ["ssh", "nftables", "fail2ban", "unattended-upgrades"])
def test_base_services_run(host, unit):
    assert_service_up(host, unit)


def test_time_zone_and_time_sync(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Paris"
    assert host.service("systemd-timesyncd").is_enabled
    conf = host.file("/etc/systemd/timesyncd.conf.d/morpheus.conf")
    assert "NTP=ntp1.example.org ntp2.example.org" in conf.content_string


def sshd_settings(host) -> dict[str, str]:
    out = host.check_output("sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_sshd_refuses_root_and_passwords(host):
    settings = sshd_settings(host)
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["authenticationmethods"] == "publickey"
    assert settings["allowgroups"] == "sshusers"


def test_sshd_offers_modern_algorithms_only(host):
    settings = sshd_settings(host)
    ciphers = set(settings["ciphers"].split(","))
    macs = set(settings["macs"].split(","))
    kex = set(settings["kexalgorithms"].split(","))
    assert ciphers == {
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    }
    assert all("-etm@" in mac for mac in macs), macs
    assert not any("sha1" in k or "group14" in k or "group-exchange" in k for k in kex), kex
    config = host.file("/etc/ssh/sshd_config")
    assert config.user == "root" and config.mode == 0o600


def test_sshd_forwards_nothing_and_limits_sessions(host):
    settings = sshd_settings(host)
    assert settings["allowtcpforwarding"] == "no"
    assert settings["allowagentforwarding"] == "no"
    assert settings["x11forwarding"] == "no"
    assert settings["maxsessions"] == "2"
    assert settings["compression"] == "no"
    # -W asks sshd for a direct-tcpip channel: the same request a -L forward makes.
    forward = host.run(f"{SSH} -W 127.0.0.1:22 deploy@127.0.0.1 < /dev/null")
    assert forward.rc != 0, "sshd let an admin open a TCP forward"
    assert "administratively prohibited" in forward.stderr, forward.stderr


def test_admin_user_logs_in_with_its_key(host):
    login = host.run(f"{SSH} deploy@127.0.0.1 id -un")
    assert login.rc == 0, f"{login.stderr}{journal(host, 'ssh')}"
    assert login.stdout.strip() == "deploy"


def test_root_cannot_log_in_even_with_a_valid_key(host):
    # prepare.yml installed the same key for root: only sshd's policy stops it.
    login = host.run(f"{SSH} root@127.0.0.1 true")
    assert login.rc != 0
    assert "Permission denied" in login.stderr


def test_password_login_is_not_offered(host):
    login = host.run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
        "deploy@127.0.0.1 true"
    )
    assert login.rc != 0
    assert "Permission denied (publickey)" in login.stderr


def test_admin_sudo_follows_the_variable(host):
    assert host.run("sudo -u deploy sudo -n true").rc == 0
    assert host.run("sudo -u auditor sudo -n true").rc != 0
    sudoers = host.file("/etc/sudoers.d/morpheus-admins")
    assert sudoers.mode == 0o440
    keys = host.file("/home/deploy/.ssh/authorized_keys")
    assert keys.user == "deploy" and keys.mode == 0o600


def nft_table(host) -> list[dict]:
    data = json.loads(host.check_output("nft -j list table inet morpheus"))
    return [item for item in data["nftables"] if "chain" in item or "rule" in item]


def accepted_ports(host) -> set[tuple[str, str, str]]:
    """(protocol, source, port) for every accept rule with a destination port."""
    accepted = set()
    for item in nft_table(host):
        rule = item.get("rule")
        if not rule or not any("accept" in expr for expr in rule["expr"]):
            continue
        source, proto, ports = "any", None, []
        for expr in rule["expr"]:
            match = expr.get("match")
            if not match:
                continue
            left, right = match["left"], match["right"]
            if "payload" in left and left["payload"]["field"] == "saddr":
                source = json.dumps(right, sort_keys=True)
            if "payload" in left and left["payload"]["field"] == "dport":
                proto = left["payload"]["protocol"]
                values = right["set"] if isinstance(right, dict) and "set" in right else [right]
                for value in values:
                    if isinstance(value, dict) and "range" in value:
                        low, high = value["range"]
                        ports.append(f"{low}-{high}")
                    else:
                        ports.append(str(value))
        accepted |= {(proto, source, port) for port in ports if proto}
    return accepted


def test_firewall_drops_by_default(host):
    chains = [item["chain"] for item in nft_table(host) if "chain" in item]
    (input_chain,) = [c for c in chains if c["name"] == "input"]
    assert input_chain["hook"] == "input"
    assert input_chain["policy"] == "drop"


def test_firewall_opens_exactly_the_allowed_ports(host):
    accepted = accepted_ports(host)
    public = {(proto, src, port) for proto, src, port in accepted if src == "any"}
    assert public == {("tcp", "any", "22"), ("tcp", "any", "80"), ("tcp", "any", "443")}
    internal = {(proto, port) for proto, src, port in accepted if src != "any"}
    assert internal == {("tcp", "5432"), ("tcp", "6379"), ("tcp", "9100-9101")}
    sources = {src for _, src, _ in accepted if src != "any"}
    assert any("10.20.0.0" in s for s in sources)
    assert any("fd00:20::" in s for s in sources)


def test_fail2ban_sshd_jail_is_active(host):
    status = host.run("fail2ban-client status sshd")
    assert status.rc == 0, f"{status.stderr}{journal(host, 'fail2ban')}"
    assert "_SYSTEMD_UNIT=sshd.service" in status.stdout
    jail = host.file("/etc/fail2ban/jail.d/morpheus.local").content_string
    assert "banaction = nftables-multiport" in jail
    assert "192.0.2.0/24" in jail


def test_unattended_upgrades_takes_security_updates_only(host):
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert 'APT::Periodic::Update-Package-Lists "1";' in periodic
    dry_run = host.run("unattended-upgrade --dry-run --debug 2>&1 | head -40")
    assert "label=Debian-Security" in dry_run.stdout, dry_run.stdout
    assert "codename=bookworm," in dry_run.stdout


def test_apt_sources_include_the_security_archive(host):
    sources = host.file("/etc/apt/sources.list.d/debian.sources").content_string
    assert "Suites: bookworm-security" in sources
    assert "URIs: http://security.debian.org/debian-security" in sources
    one_line = host.file("/etc/apt/sources.list").content_string
    assert not [line for line in one_line.splitlines() if line.startswith("deb")], one_line
    # apt has fetched the security archive's index, so unattended-upgrades can act on it.
    policy = host.check_output("apt-cache policy")
    assert "bookworm-security/main" in policy, policy


def test_no_security_update_is_left_pending(host):
    upgradable = host.check_output("apt list --upgradable 2>/dev/null")
    pending = [line for line in upgradable.splitlines() if "-security" in line]
    assert not pending, f"security updates left uninstalled: {pending}"


@pytest.mark.parametrize(
    "package", ["libpam-tmpdir", "needrestart", "auditd", "acct", "debsums", "sysstat"]
)
def test_hardening_packages_installed(host, package):
    assert host.package(package).is_installed


def test_login_defaults_for_humans(host):
    login_defs = dict(
        line.split(None, 1)
        for line in host.file("/etc/login.defs").content_string.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert login_defs["UMASK"].strip() == "027"
    assert login_defs["HOME_MODE"].strip() == "0750"
    assert login_defs["PASS_MAX_DAYS"].strip() == "365"
    assert login_defs["PASS_MIN_DAYS"].strip() == "1"
    # A key-only admin has no password that could age and lock the key out.
    ageing = host.check_output("chage -l deploy")
    assert re.search(r"^Password expires\s*:\s*never$", ageing, re.M), ageing
    assert host.file("/home/deploy").mode == 0o750
    # pam_tmpdir gives each login its own TMPDIR.
    tmpdir = host.run(f"{SSH} deploy@127.0.0.1 'echo $TMPDIR'")
    assert tmpdir.rc == 0, tmpdir.stderr
    assert tmpdir.stdout.strip().startswith("/tmp/user/"), tmpdir.stdout


def test_core_dumps_are_off(host):
    limit = host.run(f"{SSH} deploy@127.0.0.1 'ulimit -Hc'")
    assert limit.rc == 0, limit.stderr
    assert limit.stdout.strip() == "0"
    # In the file for the kernel that boots it (a container shares the host's kernel).
    assert "fs.suid_dumpable = 0" in host.file("/etc/sysctl.d/60-morpheus.conf").content_string
    coredump = host.file("/etc/systemd/coredump.conf.d/morpheus.conf").content_string
    assert "Storage=none" in coredump


def test_unused_kernel_modules_cannot_load(host):
    conf = host.file("/etc/modprobe.d/morpheus-disabled.conf").content_string
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert f"install {module} /bin/true" in conf
        assert f"blacklist {module}" in conf


def test_auditd_is_installed_with_the_rules(host):
    rules = host.file("/etc/audit/rules.d/60-morpheus.rules")
    assert rules.mode == 0o640
    assert "-w /etc/sudoers -p wa -k sudoers" in rules.content_string
    assert host.service("auditd").is_enabled


@pytest.mark.parametrize("unit", ["auditd", "acct"])
def test_kernel_owned_services_wait_for_a_vm_without_failing(host, unit):
    # Enabled for the VM the image becomes; in this container their condition skips
    # them, so nothing is left failed.
    assert host.service(unit).is_enabled
    condition = host.check_output(f"systemctl show {unit} -p ConditionResult --value")
    assert condition == "no", f"{unit} would start in a container: {condition}"


def test_no_unit_failed(host):
    failed = host.check_output("systemctl list-units --state=failed --no-legend --plain")
    assert not failed.strip(), failed


def test_login_shells_time_out_and_dump_no_core(host):
    shell = host.run(f"{SSH} deploy@127.0.0.1 'bash -lc \"echo \\$TMOUT; ulimit -c; TMOUT=0\"'")
    lines = shell.stdout.split()
    assert lines[:2] == ["900", "0"], shell.stdout + shell.stderr
    assert "readonly variable" in shell.stderr, shell.stderr


def test_needrestart_lists_without_restarting(host):
    conf = host.file("/etc/needrestart/conf.d/morpheus.conf").content_string
    assert "$nrconf{restart} = 'l';" in conf


def test_login_banner(host):
    for path in ("/etc/issue", "/etc/issue.net"):
        assert "Authorised access only" in host.file(path).content_string


# Parameters that Debian's kernel has and that some sandboxed kernels running the test
# instances do not expose; they are checked wherever the kernel has them.
ABSENT_FROM_SOME_KERNELS = {"kernel.sysrq"}


def test_sysctl_baseline_and_group_additions(host):
    conf = host.file("/etc/sysctl.d/60-morpheus.conf")
    assert conf.mode == 0o644
    content = conf.content_string
    assert "net.ipv4.tcp_syncookies = 1" in content
    assert "net.ipv4.conf.all.accept_redirects = 0" in content
    assert "vm.overcommit_memory = 1" in content  # common_sysctl_extra
    # The values parse: sysctl accepts the file (a dry parse of each key).
    for line in content.splitlines():
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip()
            if (
                key in ABSENT_FROM_SOME_KERNELS
                and not host.file(f"/proc/sys/{key.replace('.', '/')}").exists
            ):
                continue
            assert host.run(f"sysctl -n {key}").rc == 0, f"unknown kernel parameter {key}"


def test_journald_is_bounded(host):
    config = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=1G" in config
    assert "Storage=persistent" in config
    assert host.file("/var/log/journal").is_directory


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"common_firewall_public_tcp_ports": [443, 70000]},
            "common_firewall_public_tcp_ports: port 70000 is out of range (1-65535)",
        ),
        (
            {"common_admin_users": [{"name": "nokey", "ssh_keys": []}]},
            "common_admin_users: user 'nokey' needs a valid login name and at least one public key",
        ),
        (
            {"common_private_networks": ["10.0.0.0/33"]},
            "common_private_networks: '10.0.0.0/33' is not a network in CIDR notation",
        ),
        (
            {"common_private_networks": ["10.1.2.3/16"]},
            "common_private_networks: '10.1.2.3/16' has host bits set; did you mean 10.1.0.0/16?",
        ),
        (
            {"common_firewall_internal_tcp_ports": [5432]},
            "common_firewall_internal_*_ports are set but common_private_networks is empty",
        ),
        (
            {"common_ssh_port": "twenty-two"},
            "common_ssh_port",
        ),
        (
            {"common_shell_idle_timeout": -5},
            "common_shell_idle_timeout: -5 must be 0 (never) or a number of seconds.",
        ),
        (
            {"common_login_umask": "0x27"},
            "common_login_umask: '0x27' is not an octal umask such as 027.",
        ),
        (
            {"common_password_min_days": 30, "common_password_max_days": 7},
            "they must be 0 or more, with max at least min",
        ),
        (
            {
                "common_apt_sources": [
                    {
                        "uris": "http://deb.debian.org/debian",
                        "suites": ["bookworm"],
                        "components": ["main"],
                    }
                ]
            },
            "common_apt_sources has no *-security suite",
        ),
        (
            {
                "common_apt_sources": [
                    {"uris": "deb.debian.org/debian", "suites": "bookworm", "components": ["main"]}
                ]
            },
            "needs uris (a mirror URL), and suites and components as non-empty lists",
        ),
    ],
)
def test_bad_variables_stop_the_play_in_preflight(run_playbook, extra_vars, message):
    rc, output = run_playbook(SCENARIO / "bad_input.yml", extra_vars, tags="common_preflight")
    assert rc != 0, output[-2000:]
    assert message in output, output[-3000:]
