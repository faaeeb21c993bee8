"""Unit tests of filter_plugins/systemd_units.py."""

import pytest
from ansible.errors import AnsibleFilterError
from systemd_units import FilterModule, systemd_env_value


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("secret", '"secret"'),
        ("", '""'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ('\\"', '"\\\\\\""'),
        ("$HOME 'x' `id`", "\"$HOME 'x' `id`\""),
        (5432, '"5432"'),
    ],
)
def test_values_are_double_quoted_with_backslash_and_quote_escaped(value, quoted):
    assert systemd_env_value(value) == quoted


def test_unquoting_gives_the_value_back():
    # systemd's reading of a double-quoted value: a backslash takes the next character.
    value = 'p\\a"s$s\\\\w"o`rd'
    inner = systemd_env_value(value)[1:-1]
    read, escaped = [], False
    for char in inner:
        if escaped or char != "\\":
            read.append(char)
            escaped = False
        else:
            escaped = True
    assert "".join(read) == value


@pytest.mark.parametrize("value", ["two\nlines", "cr\r", "nul\0"])
def test_a_value_on_several_lines_is_refused_without_showing_it(value):
    with pytest.raises(AnsibleFilterError, match="REDIS_PASSWORD holds a line break") as error:
        systemd_env_value(value, "REDIS_PASSWORD")
    assert value not in str(error.value)


@pytest.mark.parametrize("value", [None, {"a": 1}, ["a"]])
def test_a_value_that_is_not_scalar_is_refused(value):
    with pytest.raises(AnsibleFilterError, match="must be a string, number or boolean"):
        systemd_env_value(value, "X")


def test_the_filter_is_registered():
    assert FilterModule().filters()["systemd_env_value"] is systemd_env_value
