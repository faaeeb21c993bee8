"""Unit tests of scripts/test: the summary counts, the order stages start in, and the
CPU figures."""

import signal
import time

import pytest
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


def test_long_stages_start_first_and_the_others_keep_their_order():
    planned = [
        runner.Stage(name, [])
        for name in (
            "app",
            "molecule:common",
            "molecule:data",
            "molecule:edge",
            "molecule:multihost",
            "molecule:nginx",
            "molecule:platform",
        )
    ]
    assert [s.name for s in runner.longest_first(planned)] == [
        "molecule:platform",
        "molecule:multihost",
        "molecule:data",
        "molecule:edge",
        "app",
        "molecule:common",
        "molecule:nginx",
    ]


def test_no_drills_deselects_the_drill_modules_in_the_scenarios_only(monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "--maxfail=3")
    stages = {s.name: s for s in runner.plan({"unit", "molecule"}, ["redis", "data"], False)}
    assert "PYTEST_ADDOPTS" not in stages["unit"].env
    for name in ("molecule:redis", "molecule:data"):
        assert stages[name].env["PYTEST_ADDOPTS"] == "--maxfail=3 -m 'not drill'"


def test_the_drills_run_unless_left_out(monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    (stage,) = runner.plan({"molecule"}, ["platform"])
    assert "PYTEST_ADDOPTS" not in stage.env


def test_every_molecule_scenario_is_found(tmp_path, monkeypatch):
    for name in ("redis", "data", "common"):
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    (tmp_path / "molecule" / "shared").mkdir()
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    assert runner.scenarios() == ["common", "data", "redis"]


def _stage(name, script, tmp_path):
    return runner.Stage(name, [["sh", "-c", script]], cwd=tmp_path)


@pytest.fixture
def logs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    monkeypatch.setattr(runner, "LOGS", tmp_path / "logs")
    return tmp_path / "logs"


def test_stages_side_by_side_run_at_once(tmp_path, logs):
    """The first stage waits (10 s at most) for a file the second one writes: run one
    after the other, it would give up."""
    waiter = _stage(
        "molecule:a",
        "for i in $(seq 100); do [ -e ready ] && echo saw it && exit 0; sleep 0.1; done; exit 1",
        tmp_path,
    )
    writer = _stage("molecule:b", "touch ready; echo wrote it", tmp_path)
    runner.run_side_by_side([waiter, writer], jobs=2)
    assert waiter.ok and writer.ok
    assert "saw it" in (logs / "molecule-a.log").read_text()
    assert "wrote it" in (logs / "molecule-b.log").read_text()


def test_a_failed_stage_prints_its_log(tmp_path, logs, capsys):
    failing = _stage("molecule:bad", "echo converge went wrong; exit 3", tmp_path)
    passing = _stage("molecule:good", "echo fine", tmp_path)
    runner.run_side_by_side([failing, passing], jobs=2)
    assert not failing.ok and passing.ok
    out = capsys.readouterr().out
    assert "!!! molecule:bad: `sh -c echo converge went wrong; exit 3` exited 3" in out
    assert "converge went wrong" in out
    assert "fine" not in out  # a passing stage's log stays in its file
    assert "<== molecule:bad: FAILED" in out and "<== molecule:good: ok" in out


def test_one_job_at_a_time_keeps_the_order(tmp_path, logs):
    first = _stage("molecule:first", "echo one > order", tmp_path)
    second = _stage("molecule:second", "echo two >> order", tmp_path)
    runner.run_side_by_side([first, second], jobs=1)
    assert (tmp_path / "order").read_text().split() == ["one", "two"]


SKIPPED = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="2" tests="3">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a" name="test_browser" time="0.0">
<skipped type="pytest.skip" message="no chromium on PATH">skip</skipped></testcase>
<testcase classname="tests.test_b" name="test_gpu" time="0.0">
<skipped type="pytest.skip" message="no GPU on this machine">skip</skipped></testcase>
</testsuite></testsuites>"""


def test_skips_are_read_with_their_reasons(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(SKIPPED)
    assert runner.skips(report) == [
        ("tests.test_a::test_browser", "no chromium on PATH"),
        ("tests.test_b::test_gpu", "no GPU on this machine"),
    ]


def test_only_skips_off_the_allow_list_are_unexpected(tmp_path):
    allowed = tmp_path / "allowed.txt"
    allowed.write_text("# comment line\nno GPU\\b  # no accelerator on CI's machines\n\n")
    report = tmp_path / "r.xml"
    report.write_text(SKIPPED)
    found = runner.skips(report)
    assert runner.unexpected_skips(found, runner.allowed_skip_patterns(allowed)) == [
        ("tests.test_a::test_browser", "no chromium on PATH")
    ]


def test_the_repository_allow_list_parses():
    for pattern in runner.allowed_skip_patterns():
        assert pattern.pattern


def test_cpu_counters_read_busy_and_total_ticks(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\n")
    assert runner.cpu_counters(stat) == (160, 1000)


def test_cpu_counters_without_proc_stat_are_none(tmp_path):
    assert runner.cpu_counters(tmp_path / "absent") is None
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert runner.cpu_counters(tmp_path / "odd") is None


def test_busy_share_between_two_readings():
    assert runner.busy_share((160, 1000), (460, 1400)) == pytest.approx(0.75)
    assert runner.busy_share(None, (460, 1400)) is None
    assert runner.busy_share((160, 1000), (160, 1000)) is None
    assert runner.cpu_text(0.754) == "CPU 75% busy"
    assert runner.cpu_text(None) == ""


def test_slowest_commands_come_from_every_scenario_slowest_first(tmp_path):
    (tmp_path / "data.jsonl").write_text(
        '{"test": "tests/test_data.py::test_restore_drill[x]", "command": "morpheus-data: '
        'psql -c \\"SELECT 1\\"", "seconds": 120.2}\n'
        '{"test": "tests/test_data.py::test_a", "command": "ansible-playbook restore.yml",'
        ' "seconds": 8.6}\n'
        '{"test": "cut by a killed run'
    )
    (tmp_path / "platform.jsonl").write_text(
        '{"test": "molecule/platform/tests/test_70_load.py::test_b[ansible://morpheus-platform]",'
        ' "command": "morpheus-platform: lynis", "seconds": 60.1}\n'
    )
    assert runner.slowest_commands(tmp_path, count=2) == [
        (120.2, 'data: test_data.py::test_restore_drill[x]: morpheus-data: psql -c "SELECT 1"'),
        (
            60.1,
            "platform: test_70_load.py::test_b[ansible://morpheus-platform]: "
            "morpheus-platform: lynis",
        ),
    ]


def test_background_stages_run_beside_the_others_in_a_session_of_their_own(tmp_path, logs):
    """The background stage waits for a file the foreground one writes (so they run at
    once), and records its session and its autogroup's niceness."""
    background = _stage(
        "unit",
        "for i in $(seq 100); do [ -e ready ] && break; sleep 0.1; done; [ -e ready ] || exit 1;"
        " ps -o sid= -p $$ > sid; cat /proc/self/autogroup > group 2>/dev/null; echo $$ > pid",
        tmp_path,
    )
    foreground = _stage("molecule:a", "touch ready", tmp_path)
    lane = runner.start_background([background])
    runner.run_stage(foreground)
    lane.join(timeout=30)
    assert background.ok and foreground.ok and background.background
    assert int((tmp_path / "sid").read_text()) == int((tmp_path / "pid").read_text())
    group = (tmp_path / "group").read_text()
    if group:  # kernels with autogroups (sched_autogroup_enabled) say their niceness
        assert group.split()[-1] == str(runner.BACKGROUND_NICENESS), group


def test_an_interrupted_run_ends_what_the_background_still_runs(tmp_path, logs):
    stage = _stage("lint", "sleep 60", tmp_path)
    lane = runner.start_background([stage])
    for _ in range(100):
        if runner._background:
            break
        time.sleep(0.05)
    (process,) = runner._background
    runner.end_background()
    lane.join(timeout=10)
    assert not lane.is_alive() and process.returncode == -signal.SIGTERM
    assert not stage.ok
