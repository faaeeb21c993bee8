"""Runs `morpheus` commands in one process, one command a line of stdin (the arguments
after `morpheus`, shell-quoted), e.g. `create-api-key loadtest-20261206T031500`.

playbooks/loadtest.yml hands it to a backend container's Python: each command is the
service's own (morpheus.cli.main), with its output and exit code, but a hundred of them
cost one interpreter's start instead of a hundred. Exits with the highest exit code of
its commands, after running them all.
"""

import shlex
import sys

from morpheus.cli import main


def run(line: str) -> int:
    try:
        return main(shlex.split(line))
    except SystemExit as stop:  # argparse's answer to a bad command line
        return stop.code if isinstance(stop.code, int) else 1


codes = [run(line) for line in sys.stdin if line.strip()]
sys.exit(max(codes, default=0))
