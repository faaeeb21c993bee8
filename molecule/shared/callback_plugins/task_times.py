"""Record how long each task took, one JSON line per task, for `make test-times`.

The test harness sets MORPHEUS_TASK_TIMES to a file per scenario; without it this
callback records nothing. A task's time runs from its start to the next task's start,
as ansible.posix.profile_tasks counts it (whose human-readable recap stays in the log).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: write each task's duration as a JSON line
description:
  - Appends {"playbook", "play", "task", "seconds"} lines to the file named by the
    MORPHEUS_TASK_TIMES environment variable, for the test harness's timing report.
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        target = os.environ.get("MORPHEUS_TASK_TIMES", "")
        self._path = Path(target) if target else None
        self._playbook = ""
        self._play = ""
        self._current: tuple[str, str, float] | None = None

    def _close_current(self) -> None:
        if self._current is None or self._path is None:
            return
        play, task, started = self._current
        self._current = None
        record = {
            "playbook": self._playbook,
            "play": play,
            "task": task,
            "seconds": round(time.monotonic() - started, 3),
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def v2_playbook_on_start(self, playbook) -> None:
        self._playbook = os.path.basename(playbook._file_name)

    def v2_playbook_on_play_start(self, play) -> None:
        self._close_current()
        self._play = play.get_name().strip()

    def _start(self, task) -> None:
        self._close_current()
        self._current = (self._play, task.get_name().strip(), time.monotonic())

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._start(task)

    def v2_playbook_on_stats(self, stats) -> None:
        self._close_current()
