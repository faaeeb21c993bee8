"""Unit tests of scripts/test: the summary counts and the scenario order."""

from test_harness import load

runner = load("test")

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="{errors}" failures="{failures}"
 skipped="{skipped}" tests="{tests}" time="1.0"></testsuite></testsuites>"""


def test_junit_counts_reads_a_report(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(JUNIT.format(tests=10, failures=2, errors=1, skipped=3))
    assert runner.junit_counts(report) == (4, 3, 3)


def test_junit_counts_of_a_missing_report_is_zero(tmp_path):
    assert runner.junit_counts(tmp_path / "absent.xml") == (0, 0, 0)


def test_platform_wide_scenarios_run_last(tmp_path, monkeypatch):
    for name in ("redis", "data", "common", "edge", "nginx"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    (tmp_path / "molecule" / "shared").mkdir()
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    assert runner.scenarios() == ["common", "nginx", "redis", "data", "edge"]
