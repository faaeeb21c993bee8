"""The converged host audited by Debian's Lynis: a hardening index of 80 or more,
and no warning. The index, the warnings and the suggestions go to
.cache/reports/lynis-platform.txt.

Lynis scores the kernel it runs on: in a container that is the host machine's, whose
parameters the common role leaves alone there (common_sysctl_apply), so a VM built
from the same roles scores higher than this instance."""

import time

import pytest
from conftest import PROJECT

pytestmark = pytest.mark.drill

MINIMUM_INDEX = 80
REPORT = PROJECT / ".cache" / "reports" / "lynis-platform.txt"


def report_values(content: str, key: str) -> list[str]:
    """The values of `key=` or `key[]=` lines in a lynis-report.dat."""
    values = []
    for line in content.splitlines():
        name, _, value = line.partition("=")
        if name in (key, f"{key}[]"):
            values.append(value)
    return values


def test_report_values_reads_single_and_list_keys():
    content = "hardening_index=81\nwarning[]=PKGS-7388|no security repository|-|-|\nwarnings=x\n"
    assert report_values(content, "hardening_index") == ["81"]
    assert report_values(content, "warning") == ["PKGS-7388|no security repository|-|-|"]


def test_lynis_hardening_index_is_80_or_more_without_warnings(host):
    install = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis")
    assert install.rc == 0, install.stdout[-2000:] + install.stderr
    started = time.monotonic()
    try:
        audit = host.run("lynis audit system --quick --no-colors")
        assert audit.rc == 0, audit.stdout[-2000:] + audit.stderr
        report = host.file("/var/log/lynis-report.dat").content_string
    finally:
        host.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q lynis")
    seconds = time.monotonic() - started
    (index,) = report_values(report, "hardening_index")
    warnings = report_values(report, "warning")
    suggestions = report_values(report, "suggestion")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"Lynis {report_values(report, 'lynis_version')[0]} on the converged platform host"
        f" ({seconds:.0f} s)\n"
        f"hardening index: {index} (minimum {MINIMUM_INDEX})\n"
        f"warnings ({len(warnings)}):\n"
        + "".join(f"  {w}\n" for w in warnings)
        + f"suggestions ({len(suggestions)}):\n"
        + "".join(f"  {s}\n" for s in suggestions)
    )
    assert int(index) >= MINIMUM_INDEX, f"Lynis hardening index {index}; see {REPORT}"
    assert not warnings, f"Lynis warnings: {warnings}; see {REPORT}"
