"""morpheus_loadtest.arp: the gratuitous ARP frame that announces a client address."""

from __future__ import annotations

import pytest
from morpheus_loadtest.arp import announcement, mac_bytes

MAC = "02:42:ac:1e:0a:fe"


def test_announcement_is_a_broadcast_arp_request_for_the_address_itself():
    frame = announcement(mac_bytes(MAC), "172.30.10.253")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6  # to everyone
    assert frame[6:12] == bytes.fromhex("0242ac1e0afe")  # from this interface
    assert frame[12:14] == b"\x08\x06"  # ARP
    assert frame[14:22] == bytes.fromhex("0001080006040001")  # Ethernet/IPv4, a request
    sender_mac, sender_ip = frame[22:28], frame[28:32]
    target_mac, target_ip = frame[32:38], frame[38:42]
    assert sender_mac == bytes.fromhex("0242ac1e0afe")
    assert sender_ip == target_ip == bytes([172, 30, 10, 253])
    assert target_mac == b"\x00" * 6


@pytest.mark.parametrize(
    ("value", "message"),
    [("02:42:ac:1e:0a", "is not a MAC address"), ("zz:42:ac:1e:0a:fe", "invalid literal")],
)
def test_mac_bytes_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        mac_bytes(value)


def test_announcement_refuses_a_short_mac_or_a_bad_address():
    with pytest.raises(ValueError, match="6 bytes"):
        announcement(b"\x02", "172.30.10.253")
    with pytest.raises(ValueError):
        announcement(mac_bytes(MAC), "edge")
