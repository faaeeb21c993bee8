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
  postgresql_url:
    description: >-
      The service's database URL (C(MORPHEUS_DATABASE_URL), C(MORPHEUS_DATABASE_READ_URL))
      naming each of a list of hosts, in order, as SQLAlchemy's psycopg dialect takes
      them: C(postgresql+psycopg://user:password@/db?host=a:6432&host=b:6432&connect_timeout=3).
      psycopg tries the hosts in turn, each attempt bounded by C(connect_timeout), and keeps
      the first that lets it in. The user and password are percent-encoded as
      C(url_component) does; no message names the password.
    positional: user, password, database, port, connect_timeout
    options:
      _input: {description: The hosts (addresses or names; no port)., type: list, required: true}
      user: {description: The database user., type: str, required: true}
      password: {description: Its password., type: str, required: true}
      database: {description: The database (PgBouncer's name of it)., type: str, required: true}
      port: {description: The port of every host., type: int, default: 6432}
      connect_timeout:
        description: Seconds per attempt, each host's; 0 leaves it out.
        type: int
        default: 0
  settings_file_name:
    description: >-
      The file name under the secrets directory that the service reads a setting from:
      C(MORPHEUS_DATABASE_URL) becomes C(morpheus_database_url).
"""

EXAMPLES = r"""
problems: "{{ app_settings_secrets | settings_problems('app_settings_secrets', true) }}"
file: "{{ 'MORPHEUS_SECRET_KEY' | settings_file_name }}"  # morpheus_secret_key
# postgresql+psycopg://morpheus:pw@/morpheus?host=10.0.0.4:6432&host=10.0.0.5:6432&connect_timeout=3
database: "{{ ['10.0.0.4', '10.0.0.5'] | postgresql_url('morpheus', 'pw', 'morpheus', 6432, 3) }}"
url: "redis://morpheus:{{ 'a/b+c=' | url_component }}@10.0.0.7:6379/0"  # a%2Fb%2Bc%3D
"""

NAME = re.compile(r"^MORPHEUS_[A-Z0-9_]+$")
# A host as the URL's query may carry it: an address or a name, without a port (IPv6
# addresses, whose colons SQLAlchemy would read as a port's, included).
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def _whole_number(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AnsibleFilterError(f"postgresql_url: {name} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise AnsibleFilterError(
            f"postgresql_url: {name} must be a whole number, got {value!r}"
        ) from None
    if not low <= number <= high:
        raise AnsibleFilterError(f"postgresql_url: {name} must be {low} to {high}, got {number}")
    return number


def postgresql_url(
    hosts: object,
    user: object,
    password: object,
    database: object,
    port: object = 6432,
    connect_timeout: object = 0,
) -> str:
    if isinstance(hosts, str | bytes) or not isinstance(hosts, list | tuple) or not hosts:
        raise AnsibleFilterError("postgresql_url: expected a non-empty list of hosts")
    for host in hosts:
        if not isinstance(host, str) or not HOST.match(host):
            raise AnsibleFilterError(
                f"postgresql_url: host {host!r} is not an IPv4 address or a host name"
                " (no port, no IPv6 address)"
            )
    if len(set(hosts)) != len(hosts):
        raise AnsibleFilterError(f"postgresql_url: a host is named twice in {list(hosts)}")
    if not isinstance(user, str) or not user:
        raise AnsibleFilterError("postgresql_url: the user must be a non-empty string")
    if not isinstance(password, str):
        raise AnsibleFilterError(
            f"postgresql_url: the password must be a string, got {type(password).__name__}"
        )
    if not isinstance(database, str) or not DATABASE.match(database):
        raise AnsibleFilterError(f"postgresql_url: {database!r} is not a database name")
    number = _whole_number(port, "port", 1, 65535)
    timeout = _whole_number(connect_timeout, "connect_timeout", 0, 3600)
    query = [f"host={host}:{number}" for host in hosts]
    if timeout:
        query.append(f"connect_timeout={timeout}")
    credentials = f"{url_component(user)}:{url_component(password)}"
    return f"postgresql+psycopg://{credentials}@/{database}?{'&'.join(query)}"


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "postgresql_url": postgresql_url,
            "settings_problems": settings_problems,
            "settings_file_name": settings_file_name,
            "url_component": url_component,
        }
