"""Which IP addresses an outbound request to an admin-supplied URL may reach: public unicast only.

The lists are explicit (IANA special-purpose registries, RFC 6890 and successors) rather than
``ipaddress``'s ``is_private``/``is_global`` alone: those flags changed between Python patch
releases, and a security boundary should not move with the interpreter. ``is_global`` is still
consulted last, as a backstop that can only refuse more.

IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``) are judged by the IPv4 address inside: ``::ffff:127.0.0.1`` is loopback.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address

LOOPBACK = "a loopback address"
PRIVATE = "a private network address"
LINK_LOCAL = "a link-local address"
METADATA = "the cloud instance metadata address"
RESERVED = "a reserved or special-purpose address"

_V4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", LOOPBACK),
        ("169.254.169.254/32", METADATA),  # Azure IMDS, AWS, GCP: named for the admin's sake
        ("169.254.0.0/16", LINK_LOCAL),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", RESERVED),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", RESERVED),  # deprecated 6to4 relay anycast
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", RESERVED),  # benchmarking
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", RESERVED),  # includes the broadcast address 255.255.255.255
        # Azure's wireserver: a public-looking address every Azure VM (and Function host) can
        # reach, which serves platform and extension configuration. Never a FHIR server.
        ("168.63.129.16/32", "the Azure platform (wireserver) address"),
    )
)

_V6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "an unspecified address"),
        ("::1/128", LOOPBACK),
        ("64:ff9b:1::/48", PRIVATE),  # local-use NAT64 (RFC 8215)
        ("fc00::/7", PRIVATE),  # unique local; includes AWS's fd00:ec2::254 metadata
        ("fec0::/10", PRIVATE),  # deprecated site-local
        ("fe80::/10", LINK_LOCAL),
        ("ff00::/8", "a multicast address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("2001::/23", RESERVED),  # IETF protocol assignments, includes Teredo 2001::/32
    )
)

# Everything routable on the IPv6 internet is allocated from 2000::/3; anything outside it that
# is not listed above (IPv4-compatible ::a.b.c.d, discard 100::/64, ...) is refused as reserved.
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")


def parse_address(text: str) -> Address:
    """An address from text, ignoring an IPv6 zone (``fe80::1%eth0``); raises ValueError."""
    return ip_address(text.split("%", 1)[0])


def effective_address(address: Address) -> Address:
    """The IPv4 address an IPv6 form carries, or the address itself."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def is_loopback(address: Address) -> bool:
    return effective_address(address).is_loopback


def refusal_reason(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be reached (a phrase such as "a private network address"), or
    None when it is public. ``allow_loopback`` lets loopback through (local mode) and nothing else."""
    target = effective_address(address)
    if allow_loopback and target.is_loopback:
        return None
    refused = _V4_REFUSED if isinstance(target, IPv4Address) else _V6_REFUSED
    for network, why in refused:
        if target in network:
            return why
    if isinstance(target, IPv6Address) and target not in _V6_GLOBAL_UNICAST:
        return RESERVED
    if not target.is_global:
        return RESERVED
    return None
