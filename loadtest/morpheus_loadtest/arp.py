"""Gratuitous ARP for the client addresses the load generator has just added.

The hosts on the network may still hold an address of an earlier run in their neighbour
tables, with the MAC of a container that is gone: until that entry times out (about
ten seconds in Linux), their answers to it go nowhere, and the first requests of a
run wait that long. Announcing every address once, as `arping -U` does, updates those
entries at once. The packet is built here (pure); sending it needs CAP_NET_RAW, which
containers have by default.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ARP_REQUEST = 1


def mac_bytes(text: str) -> bytes:
    parts = text.strip().split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return bytes(int(part, 16) for part in parts)


def announcement(mac: bytes, address: str) -> bytes:
    """An Ethernet frame with a gratuitous ARP request: `address` is at `mac`."""
    if len(mac) != 6:
        raise ValueError("a MAC address has 6 bytes")
    ip = ipaddress.IPv4Address(address).packed
    ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    # hardware Ethernet, protocol IPv4, their sizes, a request; sender = target = address.
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST) + mac + ip + b"\x00" * 6 + ip
    return ethernet + arp


def announce(device: str, addresses: list[str]) -> int:
    """Send one announcement per address on `device`; how many went out."""
    mac = mac_bytes(Path(f"/sys/class/net/{device}/address").read_text())
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as raw:
        raw.bind((device, 0))
        return sum(1 for address in addresses if raw.send(announcement(mac, address)))
