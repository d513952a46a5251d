"""Addresses from the environment (Keras Tuner's KERASTUNER_*, TensorFlow's TF_CONFIG): parsed
and checked before any work, and a port checked free before a server takes it.

gRPC, under both Keras Tuner and TensorFlow, takes a port with SO_REUSEPORT: a second chief on
a port that the first is serving binds it too, and a port above 65535 wraps around to another.
So a port is an integer from 1 to 65535, and `check_free` binds it plainly (no SO_REUSEPORT)
first: a port in use is refused, with the variable that chose it.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket

from .errors import ConfigError, Unreachable

MAX_PORT = 65535
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")  # a DNS name, or IPv4


def shown(text: str) -> str:
    """A value as a message quotes it: repr'd, cut at 40 characters."""
    return repr(text if len(text) <= 40 else f"{text[:37]}...")


def host(text: str, what: str) -> str:
    """A host name, IPv4 or IPv6 address (brackets dropped), or ConfigError naming `what`."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _HOST.fullmatch(bare) is None:
        raise ConfigError(
            f"{what}: {shown(text)} is no host name or IP address; give one, e.g. 10.0.0.1"
        )
    return bare


def port(text: str, what: str) -> int:
    """An integer port from 1 to 65535, or ConfigError naming `what`."""
    if not re.fullmatch(r"[0-9]{1,6}", text.strip()) or not 1 <= int(text) <= MAX_PORT:
        raise ConfigError(
            f"{what}: {shown(text)} is no port; a port is an integer from 1 to {MAX_PORT}"
        )
    return int(text)


def host_port(text: str, what: str) -> tuple[str, int]:
    """'host:port' (an IPv6 host in brackets) as (host, port), or ConfigError naming `what`."""
    head, sep, tail = str(text).rpartition(":")
    if not sep or not head:
        raise ConfigError(f"{what}: {shown(text)} is not host:port, e.g. 10.0.0.1:12345")
    return host(head, what), port(tail, what)


def address(h: str, p: int) -> str:
    """host:port as gRPC takes it (an IPv6 address in brackets)."""
    return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"


def check_free(h: str, p: int, what: str, host_what: str | None = None) -> None:
    """Bind `h`:`p` plainly and let it go: a port in use (exit 3, naming `what`) or an address
    that is not this machine's (exit 2, naming `host_what`) is said before a server takes it
    with SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in h else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
        try:
            s.bind((h, p))
        except socket.gaierror as exc:
            raise ConfigError(f"{host_what or what}: cannot resolve {h}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Unreachable(
                    f"{what}: port {p} on {h} is already in use (another chief or worker, or "
                    "another program); stop it or pick a free port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"{host_what or what}: {h} is not an address of this machine; this "
                    "process listens on one of its own"
                ) from None
            raise Unreachable(f"{what}: cannot listen on {address(h, p)}: {exc.strerror}") from None
