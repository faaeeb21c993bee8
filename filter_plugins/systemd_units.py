"""Filters that write values for systemd's unit files."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  systemd_env_value:
    description: >-
      Quote a value for a line C(NAME=value) of a file that systemd reads through
      C(EnvironmentFile=): the value in double quotes, with backslashes and double
      quotes escaped, so that any password is read back exactly as written (C($) and
      C(') are literal there). A value on several lines is refused: the file holds one
      line per variable.
    positional: name
    options:
      _input: {description: The value (a string, number or boolean)., type: raw, required: true}
      name: {description: Variable name quoted in the error (never the value)., type: str}
"""

EXAMPLES = r"""
line: "REDIS_PASSWORD={{ 'a"b\\c$d' | systemd_env_value('REDIS_PASSWORD') }}"  # "a\"b\\c$d"
"""


def systemd_env_value(value: object, name: str = "the value") -> str:
    if value is None or isinstance(value, dict | list | tuple | set):
        raise AnsibleFilterError(
            f"systemd_env_value: {name} must be a string, number or boolean, "
            f"not {type(value).__name__}"
        )
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise AnsibleFilterError(
            f"systemd_env_value: {name} holds a line break or NUL character; "
            "an environment file holds one line per variable"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"systemd_env_value": systemd_env_value}
