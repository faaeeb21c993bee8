"""morpheus_local.ports: the host ports of the edge, from the environment, checked free."""

from __future__ import annotations

import pytest
from morpheus_local import ports
from morpheus_local.errors import LocalError


def test_ports_default_to_443_and_80():
    assert ports.requested_ports({}) == {443: 443, 80: 80}


def test_ports_come_from_the_environment():
    environ = {"MORPHEUS_LOCAL_HTTPS_PORT": "8443", "MORPHEUS_LOCAL_HTTP_PORT": "8080"}
    assert ports.requested_ports(environ) == {443: 8443, 80: 8080}


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MORPHEUS_LOCAL_HTTPS_PORT": "https"}, "MORPHEUS_LOCAL_HTTPS_PORT"),
        ({"MORPHEUS_LOCAL_HTTP_PORT": "70000"}, "MORPHEUS_LOCAL_HTTP_PORT"),
        ({"MORPHEUS_LOCAL_HTTPS_PORT": "8080", "MORPHEUS_LOCAL_HTTP_PORT": "8080"}, "both"),
    ],
)
def test_bad_ports_are_refused(environ, variable):
    with pytest.raises(LocalError, match=variable):
        ports.requested_ports(environ)


def test_a_taken_https_port_names_the_variable_to_set(taken_port, free_port):
    with pytest.raises(LocalError) as caught:
        ports.check_ports_free({443: taken_port, 80: free_port()})
    assert f"port {taken_port}" in str(caught.value)
    assert "MORPHEUS_LOCAL_HTTPS_PORT" in caught.value.hint


def test_a_taken_http_port_names_its_own_variable(taken_port, free_port):
    with pytest.raises(LocalError) as caught:
        ports.check_ports_free({443: free_port(), 80: taken_port})
    assert "MORPHEUS_LOCAL_HTTP_PORT" in caught.value.hint
    assert "MORPHEUS_LOCAL_HTTPS_PORT" not in caught.value.hint


def test_free_ports_pass(free_port):
    ports.check_ports_free({443: free_port(), 80: free_port()})
