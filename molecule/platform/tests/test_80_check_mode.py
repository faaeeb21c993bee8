"""Check mode after every drill: nothing drifted from what site.yml converges, so
every drill before this one put back what it broke, and a second run of the converge
would change nothing (the scenario's idempotence check)."""

import re

from site_checks import playbook


def test_check_mode_on_the_converged_platform_changes_nothing(host):
    code, output = playbook("site.yml", options=["--check", "--diff"])
    assert code == 0, output[-3000:]
    recap = re.search(r"morpheus-platform\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert recap, output[-2000:]
    assert recap.group(1) == "0", output[-3000:]
