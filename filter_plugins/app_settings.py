"""Filters that check and shape the Morpheus service's settings for its containers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  settings_problems:
    description: >-
      Check a mapping of the service's settings (C(MORPHEUS_*) names to values) and
      return one line per problem, naming the key and never the value, so it is safe
      for secrets: a name that is not an upper-case C(MORPHEUS_*) name, a value that is
      not a string, number or boolean, a value on several lines (an environment file
      and a secret file hold one line), an empty secret.
    positional: name, secret
    options:
      _input: {description: The settings., type: dict, required: true}
      name: {description: Variable name quoted in the messages., type: str}
      secret: {description: Values are secrets (an empty one is a problem)., type: bool}
  url_component:
    description: >-
      Percent-encode a value for one component of a URL (a user name or password in
      C(scheme://user:password@host/)): every character but letters, digits and
      C(-._~) is encoded, C(/) C(+) C(=) C(@) C(:) included, unlike C(urlencode).
  settings_file_name:
    description: >-
      The file name under the secrets directory that the service reads a setting from:
      C(MORPHEUS_DATABASE_URL) becomes C(morpheus_database_url).
"""

EXAMPLES = r"""
problems: "{{ app_settings_secrets | settings_problems('app_settings_secrets', true) }}"
file: "{{ 'MORPHEUS_SECRET_KEY' | settings_file_name }}"  # morpheus_secret_key
url: "redis://morpheus:{{ 'a/b+c=' | url_component }}@10.0.0.7:6379/0"  # a%2Fb%2Bc%3D
"""

NAME = re.compile(r"^MORPHEUS_[A-Z0-9_]+$")


def settings_problems(settings: object, name: str = "settings", secret: bool = False) -> list[str]:
    if settings is None:
        return []
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(
            f"{name} must be a mapping of MORPHEUS_* names to values, got {type(settings).__name__}"
        )
    problems: list[str] = []
    for key, value in settings.items():
        label = f"{name}.{key}"
        if not isinstance(key, str) or not NAME.match(key):
            problems.append(
                f"{label}: not a setting name (upper-case MORPHEUS_*, see"
                " app/src/morpheus/settings.py)"
            )
            continue
        if isinstance(value, Mapping | list | tuple | set) or value is None:
            kind = "empty (null)" if value is None else f"a {type(value).__name__}"
            problems.append(
                f"{label}: is {kind}; give a string, number or boolean (a list as"
                " comma-separated or JSON text)"
            )
            continue
        text = str(value)
        if "\n" in text or "\r" in text:
            problems.append(f"{label}: spans several lines; a setting holds one line")
        elif secret and not text:
            problems.append(
                f"{label}: is empty; set its vault_* value in the environment's vault.yml"
            )
    return problems


def settings_file_name(key: object) -> str:
    if not isinstance(key, str) or not NAME.match(key):
        raise AnsibleFilterError(f"{key!r} is not a MORPHEUS_* setting name")
    return key.lower()


def url_component(value: object) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise AnsibleFilterError(f"url_component: expected a string, got {type(value).__name__}")
    return quote(str(value), safe="")


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "settings_problems": settings_problems,
            "settings_file_name": settings_file_name,
            "url_component": url_component,
        }
