"""Type stubs for the native module ``meshcore._meshcore`` (written by hand, checked by stubtest).

Users import these names from :mod:`meshcore`; the docstrings here are the reference.
"""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Final, Literal, Self, SupportsIndex, TypedDict, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

from meshcore.queues import Color, Verdict

__all__ = [
    "ERROR_CODES",
    "ROW_FIELDS",
    "ROW_LEN",
    "Balancer",
    "Classifier",
    "CoDel",
    "EndpointInfo",
    "Gcra",
    "LeakyBucket",
    "Packet",
    "RedQueue",
    "RouteTable",
    "SrTCM",
    "TokenBucket",
    "TrTCM",
    "TrTCM4115",
    "__version__",
    "_debug_panic",
    "_parse_batch",
    "_read_capture",
    "build_packet",
    "checksum",
    "decrement_ttl",
    "describe_error",
    "mark_ce",
    "update_checksums",
]

__version__: Final[str]
ROW_LEN: Final[int]
ROW_FIELDS: Final[list[tuple[str, int, int]]]
ERROR_CODES: Final[dict[int, str]]

_Address = str | IPv4Address | IPv6Address
# A route-table address also takes an int or numpy integer (IPv4 when it fits in 32 bits) or
# packed bytes (4 or 16, network order). A bool is refused although it is an int.
_RouteAddress = (
    str | int | np.integer[Any] | bytes | bytearray | memoryview | IPv4Address | IPv6Address
)
# A next-hop id in 0..2**32 - 2: an int or numpy integer, not a bool.
_RouteValue = int | np.integer[Any]
_Prefix = str | IPv4Network | IPv6Network
# Any C-contiguous bytes-like object; numpy arrays are listed because their stubs lack __buffer__.
_Bytes = Buffer | npt.NDArray[np.uint8]

@final
class Packet:
    """One parsed frame. Fields are read lazily; the frame's bytes are kept, not copied."""

    @classmethod
    def parse(cls, data: _Bytes, link: str = "ethernet") -> Packet:
        """Parse one frame.

        ``link`` is "ethernet" (Ethernet II with optional 802.1Q / QinQ tags), "ip" (raw IPv4 or
        IPv6, as read from a TUN device), "sll" or "sll2" (Linux cooked captures v1 / v2, as
        ``tcpdump -i any`` writes them). Raises
        :class:`meshcore.PacketError` naming the layer and the reason on malformed or truncated
        input, and :class:`meshcore.ConfigError` for an unknown ``link``.
        """

    @property
    def version(self) -> int | None:
        """4, 6, or None for a frame that is not IP (ARP, LLDP, ...)."""

    @property
    def src(self) -> str | None:
        """Source IP address as text ("10.0.0.1", "2001:db8::1")."""

    @property
    def dst(self) -> str | None:
        """Destination IP address as text."""

    @property
    def src_packed(self) -> bytes | None:
        """Source address in network byte order (4 or 16 bytes)."""

    @property
    def dst_packed(self) -> bytes | None:
        """Destination address in network byte order (4 or 16 bytes)."""

    @property
    def proto(self) -> int | None:
        """Upper-layer protocol number, after IPv6 extension headers (6 TCP, 17 UDP, ...)."""

    @property
    def sport(self) -> int | None:
        """TCP / UDP source port; None without a transport header (ICMP, non-first fragment)."""

    @property
    def dport(self) -> int | None:
        """TCP / UDP destination port; None when there is none."""

    @property
    def ttl(self) -> int | None:
        """IPv4 TTL or IPv6 hop limit."""

    @property
    def length(self) -> int:
        """IP datagram length in bytes from the IP header (link header and padding excluded;
        larger than the captured bytes for a snapped capture); the frame length in bytes for a
        frame that is not IP."""

    @property
    def vlan(self) -> list[int]:
        """VLAN ids (12 bits) of the 802.1Q / QinQ tags, outermost first."""

    @property
    def vlan_tci(self) -> list[int]:
        """Tag control information (PCP << 13 | DEI << 12 | VID) of each tag, outermost first."""

    @property
    def is_fragment(self) -> bool:
        """True for any IP fragment (more-fragments flag set or non-zero offset)."""

    @property
    def frag_offset(self) -> int:
        """Fragment offset in bytes (0 for the first fragment or an unfragmented packet)."""

    @property
    def more_fragments(self) -> bool:
        """The more-fragments flag (IPv4 MF or the IPv6 fragment header M bit)."""

    @property
    def dont_fragment(self) -> bool:
        """The IPv4 don't-fragment flag."""

    @property
    def ident(self) -> int:
        """IPv4 identification, or the IPv6 fragment header identification (0 when absent)."""

    @property
    def flow(self) -> tuple[str | None, str | None, int | None, int | None, int | None]:
        """The 5-tuple ``(src, dst, sport, dport, proto)``."""

    @property
    def link(self) -> str:
        """The link type the frame was parsed as."""

    @property
    def ethertype(self) -> int:
        """EtherType of the network layer after any VLAN tags (0x0800 IPv4, 0x86dd IPv6)."""

    @property
    def eth_src(self) -> str | None:
        """Source MAC address ("02:00:00:00:00:01"); None unless the link is Ethernet."""

    @property
    def eth_dst(self) -> str | None:
        """Destination MAC address; None unless the link is Ethernet."""

    @property
    def tos(self) -> int | None:
        """IPv4 TOS byte or IPv6 traffic class (DSCP << 2 | ECN)."""

    @property
    def dscp(self) -> int | None:
        """Differentiated services code point (6 bits)."""

    @property
    def ecn(self) -> int | None:
        """ECN field (2 bits)."""

    @property
    def flow_label(self) -> int | None:
        """IPv6 flow label (20 bits); None for IPv4."""

    @property
    def tcp_flags(self) -> int | None:
        """The nine TCP flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20,
        ECE 0x40, CWR 0x80, NS 0x100); None when there is no TCP header."""

    @property
    def icmp_type(self) -> int | None:
        """ICMP / ICMPv6 message type."""

    @property
    def icmp_code(self) -> int | None:
        """ICMP / ICMPv6 message code."""

    @property
    def ext_headers(self) -> list[int]:
        """IPv6 extension header types walked, in order (0 hop-by-hop, 43 routing, 44 fragment,
        60 destination options, 51 AH, ...)."""

    @property
    def ip_options(self) -> bytes:
        """Raw IPv4 option bytes (empty when there are none, and for IPv6)."""

    @property
    def l3_offset(self) -> int:
        """Byte offset of the network header in :attr:`data`."""

    @property
    def l4_offset(self) -> int:
        """Byte offset of the transport header in :attr:`data`."""

    @property
    def payload_offset(self) -> int:
        """Byte offset of the transport payload in :attr:`data`."""

    @property
    def payload(self) -> bytes:
        """The transport payload, up to the end of the IP datagram (link padding excluded)."""

    @property
    def data(self) -> bytes:
        """The whole frame as given to :meth:`parse`."""

    def verify_checksums(self, strict: bool = False) -> bool:
        """Check the IPv4 header checksum and the TCP / UDP / ICMP / ICMPv6 checksum (with the
        pseudo-header). Fragments' transport checksums are skipped (they cover the reassembled
        datagram); a zero UDP checksum means "none" over IPv4 and is an error over IPv6. The
        pseudo-header uses the final destination of a source route or routing header.
        Returns False on a mismatch, or with ``strict`` raises :class:`meshcore.PacketError`
        naming the checksum, the value found and the value expected."""

    def __len__(self) -> int:
        """Frame length in bytes."""

@final
class RouteTable:
    """IPv4 and IPv6 routes (prefix -> next-hop id in 0..2**32 - 2) with longest-prefix match.

    The routes are kept in order (the truth for exact queries, iteration, parents and children)
    and compiled incrementally into a Poptrie for lookups. Lookups from several threads and
    updates from another are safe: each lookup sees the table before or after an update. A
    thread waiting for the table (an update behind a long :meth:`lookup_many`) does so without
    the GIL, and the table runs no Python code while it is locked, so finalizers and other
    threads may use it at any time. Tables pickle (and copy) by value, both families at once.

    Bad prefixes, addresses and values raise :class:`meshcore.RouteError`: a value outside
    0..2**32 - 2 names the value, a bad batch row its index. ``True`` and ``False`` are
    refused as addresses (RouteError) and as values (TypeError), although Python counts them as
    ints; in a batch, a bool column (or a bool in a list) is a TypeError naming the column.
    numpy integer scalars are accepted wherever an int is.
    """

    def __init__(self) -> None: ...
    def insert(self, prefix: _Prefix, value: _RouteValue, strict: bool = True) -> None:
        """Add or replace a route. Host bits in ``prefix`` are an error unless ``strict`` is
        false (then they are cleared); a bare address is a host route (/32 or /128)."""

    def __setitem__(self, key: _Prefix, value: _RouteValue, /) -> None: ...
    def remove(self, prefix: _Prefix) -> int:
        """Remove the route for exactly ``prefix`` and return its value (KeyError if absent)."""

    def __delitem__(self, key: _Prefix, /) -> None: ...
    def get(self, prefix: _Prefix, default: int | None = None) -> int | None:
        """The value of exactly ``prefix`` (no longest-prefix match), or ``default``."""

    def __getitem__(self, key: _Prefix, /) -> int: ...
    def __contains__(self, key: object, /) -> bool:
        """Whether a route has exactly this prefix; False for anything that is not a prefix
        (None, "garbage", a prefix with host bits), where :meth:`get` and ``[]`` raise."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[str, int]]:
        """``(prefix, value)`` pairs, IPv4 then IPv6, each in address order (a snapshot)."""

    def lookup(self, address: _RouteAddress) -> int | None:
        """The value of the longest route containing ``address``, or None. An ``int`` address
        is IPv4 when it fits in 32 bits; use a ``str``, ``bytes`` or ``ipaddress`` object for
        IPv6 addresses below 2**32. ``bytes``, ``bytearray`` and ``memoryview`` hold a packed
        address: 4 bytes (IPv4) or 16 (IPv6), network order."""

    def lookup_prefix(self, address: _RouteAddress) -> tuple[str, int] | None:
        """The longest route containing ``address`` as ``(prefix, value)``, or None."""

    def lookup_many(
        self,
        addresses: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        out: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Look up a batch without the GIL: a uint32 array holds IPv4 addresses (10.0.0.1 is
        0x0a000001; either byte order of dtype, a non-native one is converted), an (n, 16)
        uint8 array IPv6 addresses in network byte order. Returns the values as int64, -1 where
        no route matches. With ``out`` (a writable, contiguous int64 array of one row per
        address) the values are written there and ``out`` is returned: repeated batches then
        reuse one buffer instead of faulting in a fresh one each call. A contiguous input is
        read in place without the GIL, so another thread must not write to it meanwhile."""

    def insert_many(
        self,
        addresses: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        lengths: npt.ArrayLike,
        values: npt.ArrayLike,
        strict: bool = True,
    ) -> None:
        """Insert one route per row (addresses as for :meth:`lookup_many`, prefix lengths in
        bits, values in 0..2**32 - 2), each column one-dimensional of integers (a list or an
        array of any integer dtype; bools raise TypeError). All or nothing: a malformed column
        or a bad row raises RouteError naming it, and the table is left unchanged."""

    def update_many(
        self,
        addresses: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        lengths: npt.ArrayLike,
        values: npt.ArrayLike,
        strict: bool = True,
    ) -> None:
        """Apply route updates in row order, as a FIB is fed from a routing daemon: a value
        (0..2**32 - 2) adds or replaces the route, -1 withdraws it (withdrawing an absent route
        does nothing). Columns as for :meth:`insert_many`. All or nothing: a bad row raises
        RouteError naming it and nothing is applied. Runs without the GIL; readers on other
        threads see the table before or after the whole batch."""

    def parents(self, prefix_or_address: _Prefix | _RouteAddress) -> list[tuple[str, int]]:
        """Covering routes, longest first: for a prefix its strict ancestors, for an address
        every route that contains it."""

    def children(self, prefix: _Prefix) -> list[tuple[str, int]]:
        """Routes strictly inside ``prefix``, in address order."""

    @classmethod
    def load(cls, path: str | os.PathLike[str], strict: bool = True) -> RouteTable:
        """Read "prefix value" lines (gzip too). ``-`` or a missing value means 0, ``#``
        starts a comment; a bad line raises RouteError with its line number. A file that
        cannot be read raises OSError as ``open()`` does (FileNotFoundError,
        IsADirectoryError, ...), with ``errno`` and ``filename`` set."""

    def __reduce__(self) -> tuple[Callable[[bytes], RouteTable], tuple[bytes]]:
        """Pickle support: rebuild with :meth:`_from_state` from compact bytes (about 9 bytes
        per IPv4 route and 21 per IPv6 route)."""

    @classmethod
    def _from_state(cls, state: bytes) -> RouteTable:
        """Private: a table from the bytes of :meth:`__reduce__`; RouteError for other bytes."""

# An int or a numpy integer (not a bool).
_Int = int | np.integer[Any]
# A rule address: "any", a prefix or address string, or an ipaddress network or address.
_RuleAddress = str | IPv4Network | IPv6Network | IPv4Address | IPv6Address
# A port (exact) or an inclusive (lo, hi) range.
_RulePorts = _Int | tuple[_Int, _Int]
# None (any), a number, a name ("tcp") or text-format protocol ("0x06/0xff"), or (value, mask).
_RuleProto = _Int | str | tuple[_Int, _Int] | None
# An integer column of a batch (any integer dtype, or a list), or one int for every row.
_IntColumn = npt.ArrayLike

class _RuleMatch(TypedDict):
    """One alternative of a rule, as :meth:`Classifier.rule` describes it."""

    src: str
    dst: str
    sport: tuple[int, int]
    dport: tuple[int, int]
    proto: tuple[int, int]

class _Rule(TypedDict):
    """A rule, as :meth:`Classifier.rule` describes it."""

    id: int
    priority: int
    action: str | None
    matches: list[_RuleMatch]

@final
class Classifier:
    """Priority-ordered 5-tuple rules over IPv4 and IPv6 packets, and the first match for a
    packet: the rule with the lowest ``priority`` number among those that match; among equal
    priorities the rule added first.

    A rule matches on source and destination prefixes, inclusive source and destination port
    ranges and a protocol ``(value, mask)`` (matching when ``proto & mask == value``). Its
    addresses decide its family: an IPv4 prefix makes an IPv4 rule, an IPv6 prefix an IPv6 rule,
    and a rule whose source and destination are both "any" matches packets of either family.
    Rule ids are ints in 0..2**32 - 1, unique within a classifier; a rule may carry an
    ``action`` label (any string, kept and returned, not interpreted).

    Rules from text (:meth:`from_text`, :meth:`load`) may have several alternatives (address,
    port and protocol lists); the rule matches when any of them does.

    Bad input raises :class:`meshcore.RuleError` and leaves the classifier unchanged; wrong
    argument types raise TypeError. Classifying from several threads while another adds and
    removes rules is safe: each call sees the rules before or after a change, and a batch sees
    one state throughout. Classifiers pickle (and copy) by value.
    """

    def __init__(self) -> None: ...
    def add(
        self,
        rule_id: _Int,
        *,
        priority: _Int,
        src: _RuleAddress = "any",
        dst: _RuleAddress = "any",
        sport: _RulePorts = (0, 65535),
        dport: _RulePorts = (0, 65535),
        proto: _RuleProto = None,
        action: str | None = None,
    ) -> None:
        """Add a rule. ``priority`` is an int in 0..2**32 - 1, lower wins. ``src`` and ``dst``
        are "any", a prefix ("10.0.0.0/8"; host bits are an error), a bare address (a host) or
        an ``ipaddress`` network or address; an IPv4 source with an IPv6 destination is an
        error. ``sport`` and ``dport`` are a port or an inclusive ``(lo, hi)`` range in
        0..65535. ``proto`` is None (any protocol), a number in 0..255, a name ("tcp", "udp",
        "icmp", "icmp6" or "ipv6-icmp", "sctp", "gre", "esp", "ah", ...) or ``(value, mask)``.
        Raises RuleError for a duplicate id or any bad field, adding nothing."""

    def remove(self, rule_id: _Int) -> None:
        """Remove a rule (KeyError if no rule has this id)."""

    def action(self, rule_id: _Int) -> str | None:
        """The action label of a rule, None when it has none (KeyError if absent)."""

    def rule(self, rule_id: _Int) -> _Rule:
        """A rule as a dict: ``id``, ``priority``, ``action`` and ``matches``, a list of its
        alternatives, each with ``src`` and ``dst`` ("any" or a prefix), ``sport`` and
        ``dport`` (inclusive ranges) and ``proto`` (``(value, mask)``, ``(0, 0)`` for any).
        KeyError if absent."""

    def __len__(self) -> int: ...
    def __contains__(self, rule_id: object, /) -> bool: ...
    def __iter__(self) -> Iterator[int]:
        """Rule ids, best first: by priority, then in the order they were added (a
        snapshot)."""

    @property
    def memory(self) -> int:
        """Bytes held by the lookup structures of both families (not the rules as added)."""

    def classify(
        self,
        src: _RouteAddress,
        dst: _RouteAddress,
        sport: _Int,
        dport: _Int,
        proto: _Int | str,
    ) -> int | None:
        """The id of the best rule matching one packet, or None. Addresses are strings, ints
        (IPv4 when below 2**32), packed bytes or ``ipaddress`` objects, both of one family;
        ``proto`` is a number or a protocol name. Use ports 0 for a packet without ports."""

    def classify_many(
        self,
        src: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        dst: npt.NDArray[np.uint32] | npt.NDArray[np.uint8],
        sport: _IntColumn,
        dport: _IntColumn,
        proto: _IntColumn | str,
        *,
        out: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Classify a batch given as columns, without the GIL: rule ids as int64, -1 where no
        rule matches. ``src`` and ``dst`` are both uint32 arrays (IPv4; 10.0.0.1 is
        0x0a000001, either byte order) or both (n, 16) uint8 arrays (IPv6, network byte
        order). ``sport``, ``dport`` and ``proto`` are integer arrays of any dtype (or lists,
        empty ones too), checked against 0..65535 and 0..255 (a value out of range, however
        large, raises RuleError naming its row), or one int (a protocol name too) for every
        row; bools, one, an array of them or one in a list, raise TypeError, as in
        :meth:`classify`. Contiguous uint32, uint8 rows, uint16 ports and uint8 protocols are
        read in place, not copied, so another thread must not write to them meanwhile. With
        ``out`` (a writable, contiguous int64 array of one row per packet) the ids are written
        there and ``out`` is returned."""

    def classify_parsed(
        self,
        rows: npt.NDArray[np.void] | npt.NDArray[np.uint8],
        *,
        out: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Classify the rows of :func:`meshcore.parse_batch` (PACKET_DTYPE, or the raw (n, 64)
        uint8 form) without the GIL: rule ids as int64, -1 where no rule matches. A row that
        failed to parse (``error`` not 0, a truncated capture included) or is not IP gets -1;
        a row without ports (ICMP, a non-first fragment) is classified with both ports 0.
        ``out`` as for :meth:`classify_many`."""

    def classify_frames(
        self,
        buffer: _Bytes,
        offsets: npt.ArrayLike,
        link: str = "ethernet",
        *,
        out: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Parse and classify N frames in one call without the GIL: ``buffer`` and ``offsets``
        (N + 1 integers) as for :func:`meshcore.parse_batch`, and the answer as for
        :meth:`classify_parsed` (-1 for frames that fail to parse or are not IP; ports 0 for
        frames without them). The frames are parsed a block at a time and never become rows
        in Python. Bad offsets raise :class:`meshcore.PacketError` as ``parse_batch`` does, an
        unknown ``link`` :class:`meshcore.ConfigError`."""

    @classmethod
    def from_classbench(cls, path: str | os.PathLike[str]) -> Classifier:
        """Read a ClassBench filter file (``@sip/len dip/len lo : hi lo : hi 0xPP/0xMM ...``,
        IPv4; host bits are cleared) in one bulk build. Rule id and priority are the rule's
        0-based index, so the answer is the first rule in the file that matches. A bad line
        raises RuleError naming the file and the line; a file that cannot be read raises
        OSError as ``open()`` does, with ``errno`` and ``filename`` set."""

    @classmethod
    def from_text(cls, text: str) -> Classifier:
        """Rules in the text format, one per line, in one bulk build::

            allow tcp from 10.0.0.0/8 to any port 80,443
            deny udp from any port 1024-65535 to 192.168.1.0/24 port 53
            allow proto 0x06/0xff from {2001:db8::/32, 2001:db9::/32} to any  id 7 priority 3
            deny from any to any

        An action word (kept as the rule's action), an optional protocol (a name, a number,
        ``proto V/M``, ``any`` or ``ip``), ``from`` addresses with optional ``port`` ports,
        ``to`` addresses with optional ``port`` ports, then optional ``id N`` and
        ``priority P`` (both default to the rule's 0-based index). Addresses are ``any``, a
        prefix or an address; ports ``N`` or ``N-M``; any of these may be a list (``a,b`` or
        ``{a, b}``), which makes alternatives of one rule (at most 4096, and at most 4096
        items in one list). ``#`` starts a comment. A bad line raises RuleError naming it
        (unknown protocol, host bits, inverted or out-of-range port, mixed families, too many
        alternatives, duplicate id, trailing words); see the README for the full format."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Classifier:
        """Read a file of rules in the :meth:`from_text` format; errors name the file and the
        line. A file that cannot be read raises OSError as ``open()`` does, with ``errno``
        and ``filename`` set."""

    def __reduce__(self) -> tuple[Callable[[list[_Rule]], Classifier], tuple[list[_Rule]]]:
        """Pickle support: the rules as :meth:`rule` dicts, best first."""

    @classmethod
    def _from_rules(cls, rules: Iterable[_Rule]) -> Classifier:
        """Private: a classifier from :meth:`rule` dicts, added in order in one bulk build."""

# Rates, sizes and times given as exact numbers: an int (or any integer with __index__, such as
# numpy's), a float (read as the decimal it prints as, so 0.1 is 1/10), a Fraction or a Decimal.
# Negative values, NaN and infinities are refused.
_Number = int | float | Fraction | Decimal | SupportsIndex
# clock=: a callable returning seconds (float); None reads CLOCK_MONOTONIC (time.monotonic()).
_Clock = Callable[[], float] | None

@final
class TokenBucket:
    """A token bucket: ``rate`` tokens/s (> 0), capacity ``burst`` tokens (> 0), starting full.

    Exact: rate and burst are kept as rationals and the level as an integer count of units (the
    least number of units per token that makes the burst and the refill per nanosecond whole),
    so the bucket never drifts: over any run it admits exactly what the fluid model admits,
    ``A(s, t] <= burst + rate * (t - s)``. ``now`` is float seconds (rounded to the
    nanosecond) or None for the object's clock; time going backwards counts as no time.
    Thread-safe. A cost above ``burst`` can never conform and raises :class:`ConfigError`.
    """

    def __new__(cls, rate: _Number, burst: _Number, *, clock: _Clock = None) -> Self: ...
    def try_consume(self, n: int = 1, now: float | None = None) -> bool:
        """Take ``n`` tokens if the bucket holds them (True), else take nothing (False)."""

    def tokens(self, now: float | None = None) -> float:
        """The tokens in the bucket at ``now`` (the nearest float to the exact level)."""

    def time_until(self, n: int = 1, now: float | None = None) -> float:
        """Seconds from ``now`` until ``n`` tokens are there (0.0 if they are now), rounded up
        so that ``try_consume(n, now + time_until(n, now))`` succeeds: the least float at or
        above the exact wait whose float sum with ``now`` reaches the moment (far from 0 floats
        are coarse, 477 ns apart at 4e9 s). A ``now`` before the latest time seen counts as
        that time, but the wait is measured from ``now``. ``math.inf`` when the moment lies
        past the range of times (9.2e9 s, or a wait of 2**64 ns or more)."""

    def try_consume_many(
        self,
        costs: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
        out: npt.NDArray[np.bool_] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """:meth:`try_consume` for each cost (an integer array) in order, at ``times`` (float64
        seconds, one per cost) or at one clock reading for the whole batch; the answers as a
        bool array (``out`` if given). The GIL is released. All costs and times are checked
        first: a negative cost, a cost above the burst or a bad time raises ConfigError naming
        the row, and the bucket is left unchanged."""

    @property
    def rate(self) -> float:
        """Tokens added per second."""

    @property
    def burst(self) -> float:
        """Capacity in tokens."""

@final
class Gcra:
    """The generic cell rate algorithm (ITU-T I.371, virtual scheduling), as governor uses it.

    ``interval`` T and ``tolerance`` tau are seconds (rounded to whole nanoseconds); the
    theoretical arrival time (TAT) is an integer count of nanoseconds. Cost ``n`` conforms at
    ``t`` iff ``t >= TAT + (n - 1) T - tau``, and then ``TAT = max(TAT, t) + n T``. A fresh
    limiter admits :attr:`burst` ``= 1 + floor(tau / T)`` at once; a larger cost raises
    :class:`ConfigError`. ``Gcra(T, tau)`` admits exactly what ``TokenBucket(1 / T, 1 + tau / T)``
    admits (the burst is fractional unless T divides tau).
    """

    def __new__(cls, interval: _Number, tolerance: _Number, *, clock: _Clock = None) -> Self: ...
    def try_consume(self, n: int = 1, now: float | None = None) -> bool:
        """Whether cost ``n`` conforms at ``now``; if so the TAT moves on by ``n * interval``."""

    def time_until(self, n: int = 1, now: float | None = None) -> float:
        """Seconds from ``now`` until cost ``n`` conforms (0.0 if it does now), rounded as
        :meth:`TokenBucket.time_until` rounds it: ``try_consume(n, now + time_until(n, now))``
        succeeds. Measured from ``now`` even when it lies before the latest time seen;
        ``math.inf`` when the moment lies past the range of times."""

    def try_consume_many(
        self,
        costs: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
        out: npt.NDArray[np.bool_] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """As :meth:`TokenBucket.try_consume_many`: a bool array, GIL released, rows checked
        first."""

    @property
    def interval(self) -> float:
        """Emission interval T, seconds."""

    @property
    def tolerance(self) -> float:
        """Tolerance tau, seconds."""

    @property
    def burst(self) -> int:
        """The largest cost that can conform: ``1 + floor(tolerance / interval)``."""

@final
class LeakyBucket:
    """A pacing shaper: a FIFO of Python objects drained at ``rate`` bytes/s (Turner's leaky
    bucket as a queue, burst of one packet).

    Packet i may leave at ``start_i = max(arrival_i, start_{i-1} + size_{i-1} / rate)``, kept
    exactly (integer units of 1/p ns for rate = p/q bytes per ns), so the schedule never drifts.
    The schedule is fixed on arrival: a late :meth:`dequeue` does not push later packets back.
    An arrival that would take the bytes held past ``limit`` or the packets held past
    ``packet_limit`` is dropped and does not touch the schedule. ``limit`` also caps the packets
    held at ``limit`` packets (a packet holds memory however short it is, so zero-byte packets
    cannot grow the queue without bound; packets of a byte or more reach the byte limit
    first). With both None the queue still
    holds at most 10,240 items (memory stays bounded under a flood); :meth:`schedule_many` holds
    no items and has no default bound.
    """

    def __new__(
        cls,
        rate: _Number,
        limit: int | None = None,
        *,
        packet_limit: int | None = None,
        clock: _Clock = None,
    ) -> Self: ...
    def enqueue(self, item: object, size: int | None = None, now: float | None = None) -> Verdict:
        """Queue ``item`` of ``size`` bytes (None: ``len(item)`` for bytes, bytearray and
        memoryview, else 1): ``Verdict.ENQUEUED``, or ``Verdict.DROPPED`` over a limit."""

    def dequeue(self, now: float | None = None) -> Any:
        """The head item once its start time has come by ``now``, else None."""

    def next_departure(self) -> float | None:
        """When the head item may leave (seconds on the object's clock, rounded up to the
        nanosecond, then to the least float that converts back to it or later, so that
        ``dequeue(next_departure())`` takes the head), or None when the queue is empty."""

    def schedule_many(
        self, sizes: npt.ArrayLike, times: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float64]:
        """The self-draining form: schedule packets of ``sizes`` bytes arriving at ``times``
        (float64 seconds, or one clock reading) on the same link, each leaving by itself at its
        start time; their departure times in seconds, rounded up as :meth:`next_departure`
        (NaN for a packet dropped by a limit). The limits count the queued items plus the
        scheduled packets whose departure is still after each arrival. The GIL is released."""

    def __len__(self) -> int: ...
    @property
    def backlog(self) -> int:
        """Bytes held in the queue."""

    @property
    def rate(self) -> float:
        """Drain rate, bytes/s."""

    @property
    def limit(self) -> int | None:
        """Bytes held at most, and packets held at most (None: unlimited)."""

    @property
    def packet_limit(self) -> int | None:
        """Packets held at most (None: unlimited)."""

@final
class SrTCM:
    """The single-rate three-colour marker (RFC 2697): sizes in bytes, ``cir`` bytes/s (> 0),
    ``cbs`` and ``ebs`` bytes (not both 0); both buckets start full.

    C fills at CIR up to CBS, and what C cannot hold overflows into E (up to EBS), exactly and
    continuously. Colour-blind: ``Tc >= B`` green (``Tc -= B``), else ``Te >= B`` yellow
    (``Te -= B``), else red. Colour-aware (``color_aware=True``): only a green packet may be
    green, only green or yellow may be yellow; otherwise red.
    """

    def __new__(
        cls,
        cir: _Number,
        cbs: _Number,
        ebs: _Number,
        *,
        color_aware: bool = False,
        clock: _Clock = None,
    ) -> Self: ...
    def color(self, size: int, now: float | None = None, color: Color | int | None = None) -> Color:
        """The colour of a packet of ``size`` bytes at ``now``; ``color`` is its pre-colour
        (None: green), used only when colour-aware."""

    def color_many(
        self,
        sizes: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
        colors: npt.ArrayLike | None = None,
        out: npt.NDArray[np.uint8] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """:meth:`color` for each size in order: a uint8 array of colour codes (0 green, 1
        yellow, 2 red). GIL released; rows checked first (ConfigError names a bad one)."""

    @property
    def cir(self) -> float: ...
    @property
    def cbs(self) -> float: ...
    @property
    def ebs(self) -> float: ...
    @property
    def color_aware(self) -> bool: ...

@final
class TrTCM:
    """The two-rate three-colour marker (RFC 2698): ``pir >= cir > 0`` bytes/s, ``cbs`` and
    ``pbs`` > 0 bytes; P (PBS at PIR) and C (CBS at CIR) refill independently and start full.

    Colour-blind: ``Tp < B`` red; else ``Tc < B`` yellow (``Tp -= B``); else green (``Tp -= B``
    and ``Tc -= B``). Colour-aware: red input or ``Tp < B`` red; else yellow input or
    ``Tc < B`` yellow; else green. Green spends peak tokens too, so PIR caps the total.
    """

    def __new__(
        cls,
        cir: _Number,
        cbs: _Number,
        pir: _Number,
        pbs: _Number,
        *,
        color_aware: bool = False,
        clock: _Clock = None,
    ) -> Self: ...
    def color(self, size: int, now: float | None = None, color: Color | int | None = None) -> Color:
        """As :meth:`SrTCM.color`."""

    def color_many(
        self,
        sizes: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
        colors: npt.ArrayLike | None = None,
        out: npt.NDArray[np.uint8] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """As :meth:`SrTCM.color_many`."""

    @property
    def cir(self) -> float: ...
    @property
    def cbs(self) -> float: ...
    @property
    def pir(self) -> float: ...
    @property
    def pbs(self) -> float: ...
    @property
    def color_aware(self) -> bool: ...

@final
class TrTCM4115:
    """The RFC 4115 two-rate meter: C (CBS at ``cir``) and E (EBS at ``eir``) refill
    independently and start full (rates not both 0, sizes not both 0). Colouring is as
    :class:`SrTCM`; green spends only C, so up to CIR + EIR passes as green or yellow.
    """

    def __new__(
        cls,
        cir: _Number,
        cbs: _Number,
        eir: _Number,
        ebs: _Number,
        *,
        color_aware: bool = False,
        clock: _Clock = None,
    ) -> Self: ...
    def color(self, size: int, now: float | None = None, color: Color | int | None = None) -> Color:
        """As :meth:`SrTCM.color`."""

    def color_many(
        self,
        sizes: npt.ArrayLike,
        times: npt.ArrayLike | None = None,
        colors: npt.ArrayLike | None = None,
        out: npt.NDArray[np.uint8] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """As :meth:`SrTCM.color_many`."""

    @property
    def cir(self) -> float: ...
    @property
    def cbs(self) -> float: ...
    @property
    def eir(self) -> float: ...
    @property
    def ebs(self) -> float: ...
    @property
    def color_aware(self) -> bool: ...

# Load balancing.

_Health = Literal["healthy", "unhealthy", "draining"]
_Endpoints = Iterable[str] | Mapping[str, float]

@final
class EndpointInfo:
    """A snapshot of one endpoint, from :meth:`Balancer.endpoints`."""

    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> float:
        """The configured weight."""

    @property
    def effective_weight(self) -> float:
        """The weight after slow start at the time asked."""

    @property
    def health(self) -> _Health: ...
    @property
    def in_flight(self) -> int:
        """Requests picked and not yet :meth:`Balancer.done`."""

    @property
    def ewma(self) -> float | None:
        """The peak-EWMA RTT estimate in seconds, decayed to the time asked; None before the
        first ``done`` and under every other policy (only peak EWMA records it)."""

    @property
    def failure_ratio(self) -> float:
        """Peak EWMA's decayed failure ratio (0..1)."""

@final
class Balancer:
    """A load balancer: picks an endpoint for every request (see the README, "Load balancing").

    ``policy`` is one of "round_robin" (EDF weighted round robin), "random", "least_request"
    (power of two choices on requests in flight), "peak_ewma" (power of two choices on RTT
    estimate x (in flight + 1)), "ring_hash" (ketama) and "maglev". ``endpoints`` is a list of
    names (weight 1 each) or a dict name -> weight (finite, > 0). ``seed`` (an int in
    [0, 2**64)) makes every pick reproducible; None draws a random one. ``clock`` is the time
    source for ``now=None``; times and latencies are float seconds. The default clock is
    ``time.monotonic``'s, read at the kernel tick's resolution (1 to 4 ms, much cheaper to
    read): the balancer uses time only for the peak-EWMA decay and slow start, over seconds,
    and ``pick`` and ``done`` read no clock at all under the other policies without slow start.
    Options, by keyword (durations in seconds): ``choice_count`` (2),
    ``active_request_bias`` (1.0), ``decay`` (10.0), ``default_rtt`` (0.030),
    ``failure_penalty`` (1.0), ``min_ring_size`` (1024), ``max_ring_size`` (8388608),
    ``table_size`` (65537, prime), ``hash_balance_factor`` (None; a percentage >= 100, hash
    policies only), ``slow_start_window`` (0: off), ``slow_start_aggression`` (1.0),
    ``slow_start_min_weight_percent`` (10), ``panic_threshold`` (50; 0 disables panic).

    Unknown policies and options, bad values, duplicate names and weights <= 0 raise
    :class:`ConfigError`. Thread-safe.
    """

    def __new__(
        cls,
        policy: str,
        endpoints: _Endpoints,
        *,
        seed: int | None = None,
        clock: _Clock = None,
        **options: float | None,
    ) -> Self: ...
    def pick(
        self, key: str | bytes | bytearray | int | None = None, now: float | None = None
    ) -> str:
        """Choose an endpoint for one request, count it in flight there and return its name
        (the same ``str`` object every time).

        ``key`` is the request key of the hash policies, hashed with XXH64 (seed 0): a str as
        its UTF-8 bytes, bytes as themselves, an int as the 8 little-endian bytes of its 64-bit
        two's complement (-2**63 <= key < 2**64; so -1 and 2**64 - 1 are the same key). None
        draws a random key; the other policies ignore it. Raises :class:`NoEndpointError` when
        no endpoint may be picked (empty set, all draining, or none healthy with panic off)."""

    def done(self, ep: str, latency: float, ok: bool = True, now: float | None = None) -> None:
        """End a request on ``ep`` that took ``latency`` seconds and succeeded (``ok``) or
        failed. Under peak EWMA it updates the RTT estimate (a failure counts as at least
        ``failure_penalty``). A name no longer in the set is ignored."""

    def set_endpoints(self, endpoints: _Endpoints, now: float | None = None) -> None:
        """Replace the endpoint set. Endpoints that stay keep their in-flight count, RTT
        estimate, health and join time; new ones join healthy at ``now`` (slow start counts
        from then). On error nothing changes."""

    def set_health(self, ep: str, healthy: bool | str) -> None:
        """Mark ``ep`` healthy (True / "healthy"), unhealthy (False / "unhealthy") or
        "draining" (no new picks, even in panic). KeyError for an unknown name."""

    def endpoints(self, now: float | None = None) -> list[EndpointInfo]:
        """A snapshot of every endpoint at ``now``, in the order given."""

    def names(self) -> list[str]:
        """The endpoint names, in the order given."""

    @property
    def policy(self) -> str:
        """The policy's name."""

    @property
    def in_panic(self) -> bool:
        """True while fewer than ``panic_threshold`` percent of the non-draining endpoints are
        healthy (picks then ignore health)."""

    def __len__(self) -> int: ...

def build_packet(
    src: _Address,
    dst: _Address,
    *,
    proto: str | int | None = None,
    sport: int = 0,
    dport: int = 0,
    payload: bytes | bytearray | None = None,
    link: str = "ethernet",
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    frag_offset: int = 0,
    ip_options: bytes | bytearray | None = None,
    flow_label: int = 0,
    ext_headers: Sequence[tuple[int, bytes | bytearray]] | None = None,
    eth_src: str = "02:00:00:00:00:01",
    eth_dst: str = "02:00:00:00:00:02",
    vlan: Sequence[int] | None = None,
    vlan_tci: Sequence[int] | None = None,
    tcp_flags: str | int | None = None,
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    urgent: int = 0,
    tcp_options: bytes | bytearray | None = None,
    icmp_type: int | None = None,
    icmp_code: int = 0,
    icmp_rest: int = 0,
) -> bytes:
    """Build a complete frame with every length and checksum filled in.

    The IP version follows ``src`` / ``dst``. ``proto`` is "udp" (the default), "tcp", "icmp"
    (ICMPv6 over IPv6) or a protocol number, in which case ``payload`` follows the IP header as is
    (use that for non-first fragments). ``ttl`` is the TTL or hop limit, ``tos`` the TOS byte or
    traffic class. ``frag_offset`` is in bytes (a multiple of 8); over IPv6, ``more_fragments`` or
    a non-zero ``frag_offset`` adds a fragment header carrying ``ident``. ``ext_headers`` lists
    IPv6 extension headers as ``(type, body)``, body after the two-byte next/length prefix,
    zero-padded to the header's unit. ``vlan`` lists VLAN ids (0 to 4095), outermost first;
    ``vlan_tci`` instead gives whole tag control values (PCP << 13 | DEI << 12 | VID). The outer
    tag of several gets TPID 0x88a8 (QinQ). ``tcp_flags`` is an int or letters ("S", "SA",
    "FPU"; default "S"). ``icmp_type`` defaults to echo request (8, or 128 for ICMPv6);
    ``icmp_rest`` is the four type-specific header bytes as an int. ``link`` is "ethernet",
    "ip", "sll" or "sll2". The checksums use the final destination of an IPv4 source route or
    IPv6 routing header. Raises :class:`meshcore.PacketError` when a value is out of range for
    its field or the packet would not parse (bad option TLVs, hop-by-hop not first, ...).
    """

def checksum(data: _Bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: the 16-bit ones' complement of the ones'
    complement sum, as it would be stored in a header whose checksum field was zero."""

def decrement_ttl(buffer: _Bytes, l3_offset: int = 0) -> int:
    """Decrement the TTL / hop limit of the IP header at ``buffer[l3_offset:]`` in place and
    return the new value. The IPv4 header checksum is patched incrementally (RFC 1624, eqn. 3).
    ``buffer`` must be writable (bytearray, memoryview, numpy array). Raises
    :class:`meshcore.PacketError` when the header is malformed or the TTL is already 0."""

def mark_ce(buffer: _Bytes, l3_offset: int = 0) -> bool:
    """Set ECN Congestion Experienced (RFC 3168) in place on the IP header at
    ``buffer[l3_offset:]`` if the packet is ECN-capable (ECT(0) or ECT(1)) and return True; the
    IPv4 header checksum is patched incrementally (RFC 1624). A Not-ECT packet is left unchanged
    and returns False: a queue that would mark it drops it instead. A packet already carrying CE
    returns True. ``buffer`` must be writable; raises :class:`meshcore.PacketError` when the
    header is malformed."""

def update_checksums(buffer: _Bytes, link: str = "ethernet") -> int:
    """Recompute the IPv4 header checksum and the TCP / UDP / ICMP / ICMPv6 checksum (with the
    pseudo-header) of the frame in ``buffer`` in place, after addresses or ports were rewritten
    (NAT, load balancing). A fragment keeps its transport checksum, which covers the whole
    datagram. Returns the number of checksums written (0 for a frame that is not IP). ``buffer``
    must be writable; raises :class:`meshcore.PacketError` when the frame does not parse."""

def describe_error(code: int) -> str | None:
    """The message for a :func:`meshcore.parse_batch` ``error`` code ("ipv4: truncated"),
    or None for 0 and for numbers that are no error code. A :class:`meshcore.PacketError`
    message for the same problem starts with this text."""

def _parse_batch(
    buffer: _Bytes,
    offsets: npt.NDArray[np.int64],
    link: str = "ethernet",
    verify_checksums: bool = False,
    out: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """Private: rows as an (N, 64) uint8 array; use :func:`meshcore.parse_batch`."""

def _read_capture(
    data: _Bytes,
) -> tuple[
    bytes,
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint32],
    list[int],
]:
    """Private: scan a pcap / pcapng image; use :func:`meshcore.io.read_pcap`."""

def _debug_panic(message: str) -> None:
    """Private: panic in Rust on purpose, to test that it surfaces as InternalError."""

# --- Active queue management: RED and CoDel ---------------------------------------------------

# A one-dimensional array-like of packet sizes in bytes (integers in 0..2**32).
_Sizes = npt.ArrayLike
# Arrival times in seconds (float64), one per packet; None = one clock reading for the batch.
_Times = npt.ArrayLike | None

class _RedStats(TypedDict):
    enqueued: int
    dequeued: int
    early_drops: int
    forced_drops: int
    overlimit_drops: int
    early_marks: int
    forced_marks: int

class _CodelStats(TypedDict):
    enqueued: int
    dequeued: int
    drops: int
    overlimit_drops: int
    marks: int

@final
class RedQueue:
    """A bounded FIFO with Random Early Detection, exactly Floyd and Jacobson 1993 (Fig. 2).

    Per arrival, with ``q`` the queue size before it (packets, or bytes with ``bytes_mode``):

    - ``avg <- (1 - w_q) * avg + w_q * q`` when the queue holds packets; when it is empty,
      ``avg <- (1 - w_q) ** m * avg`` with ``m = idle_time / packet_time`` (the idle
      correction replaces the EWMA step).
    - ``avg < min_th``: enqueued, ``count = -1``.
    - ``min_th <= avg < max_th`` (with ``gentle``, up to ``2 * max_th``): ``count += 1`` and
      ``p_b = max_p * (avg - min_th) / (max_th - min_th)`` (gentle, above ``max_th``:
      ``max_p + (1 - max_p) * (avg - max_th) / max_th``); the packet is marked with probability
      ``p_a`` from ``count_rule``; ``count = 0`` after a mark. The default ``"fj"`` is
      ``p_a = p_b / (1 - count * p_b)``: marks are uniformly spaced on 1 .. 1/p_b - 1 packets
      apart, so the realized rate is about ``2 * p_b``. ``"linux"`` (include/net/red.h; rate
      ``2 p_b / (1 + p_b)``), ``"wait"`` (ns-2/ns-3 default; about ``2 p_b / 3``) and
      ``"geometric"`` (``p_a = p_b``) are the others.
    - Above (forced region): dropped.
    - A marked packet is dropped, or with ``ecn=True`` and ``ecn_capable=True`` queued as
      ``Verdict.MARKED`` (set CE on it). In the forced region ECN-capable packets are dropped
      too unless ``harddrop=False``.
    - A packet RED lets in is still dropped (overlimit) if the queue would exceed ``limit``
      (packets, or bytes with ``bytes_mode``; default ``ceil(4 * max_th)``). With
      ``bytes_mode`` the queue also holds at most ``limit`` packets, so that zero-byte packets
      cannot queue without bound (packets of a byte or more reach the byte limit first).

    ``adaptive=True`` is Adaptive RED (Floyd, Gummadi, Shenker 2001): every ``adapt_interval``
    seconds, with the band ``[min_th + 0.4 d, min_th + 0.6 d]`` (``d = max_th - min_th``),
    ``max_p += min(0.01, max_p / 4)`` above it and ``max_p *= 0.9`` below it, clamped to
    [0.01, 0.5]; the timer starts at the first call and ticks are applied at the next call.

    Thresholds are packets (or bytes); times are seconds; ``packet_time`` is the transmission
    time of a typical packet (default 1.2 ms: 1500 bytes at 10 Mbit/s). Randomness comes from a
    PRNG seeded by ``seed``. Every call takes ``now`` (seconds) or reads ``clock`` (default
    ``time.monotonic``). Bad parameters raise :class:`meshcore.ConfigError`.
    """

    def __new__(
        cls,
        min_th: float,
        max_th: float,
        max_p: float,
        w_q: float = 0.002,
        limit: int | None = None,
        gentle: bool = False,
        ecn: bool = False,
        adaptive: bool = False,
        seed: int = 0,
        *,
        count_rule: str = "fj",
        bytes_mode: bool = False,
        packet_time: float = 0.0012,
        harddrop: bool = True,
        adapt_interval: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> RedQueue: ...
    def enqueue(
        self,
        item: object,
        size: int | None = None,
        now: float | None = None,
        ecn_capable: bool = False,
    ) -> Verdict:
        """Offer ``item`` (``size`` bytes; default ``len(item)`` for bytes-like items, else 1
        packet, and required in ``bytes_mode``): ENQUEUED, MARKED (queued; set CE on it) or
        DROPPED."""

    def dequeue(self, now: float | None = None) -> Any:
        """The head item, or None when empty (a packet queued by size only comes back as its
        size). Emptying the queue starts an idle period at ``now``."""

    def enqueue_many(
        self,
        sizes: _Sizes,
        times: _Times = None,
        ecn_capable: npt.ArrayLike | None = None,
        items: Iterable[object] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Offer a batch of packets in order, with the GIL released: sizes in bytes, arrival
        times in seconds (None: one clock reading for all), ECN capability (bool array; None:
        none), items (None: each packet is its size). Returns the verdict codes (0 enqueued,
        1 dropped, 2 marked). Bad sizes or times raise ConfigError (naming the row of a size
        out of range with its value) before any packet is offered; bools as sizes or times
        raise TypeError."""

    def dequeue_many(self, n: int, now: float | None = None) -> list[Any]:
        """Up to ``n`` items from the head, in order."""

    def probability(self, avg: float) -> float:
        """The static curve ``p_b(avg)`` for the current ``max_p``: 0 below ``min_th``, linear
        to ``max_p`` at ``max_th``, then linear to 1 at ``2 * max_th`` (gentle) or 1."""

    def stats(self) -> _RedStats:
        """Counters: enqueued (marked included), dequeued, early_drops, forced_drops,
        overlimit_drops, early_marks, forced_marks."""

    @property
    def avg(self) -> float:
        """The average queue size as of the latest arrival (packets, or bytes)."""

    @property
    def max_p(self) -> float:
        """The current ``max_p`` (changed only by Adaptive RED)."""

    @property
    def count(self) -> int:
        """Packets since the last mark (-1 below ``min_th``)."""

    @property
    def backlog(self) -> int:
        """Bytes held."""

    @property
    def limit(self) -> int:
        """Capacity, packets (or bytes with ``bytes_mode``, and then packets too)."""

    @property
    def min_th(self) -> float: ...
    @property
    def max_th(self) -> float: ...
    @property
    def w_q(self) -> float: ...
    @property
    def count_rule(self) -> str: ...
    @property
    def bytes_mode(self) -> bool: ...
    def __len__(self) -> int:
        """Packets held."""

@final
class CoDel:
    """A bounded FIFO under CoDel, "Controlled Delay" (RFC 8289, its pseudocode).

    Packets are stamped at enqueue; drops happen at dequeue, on the sojourn time of the head.
    Once it has stayed at or above ``target`` seconds for ``interval`` seconds (with more than
    ``mtu`` bytes left queued), CoDel drops the head and enters its dropping state; there it
    drops again at ``drop_next``, with ``drop_next += interval / sqrt(count)`` (the control
    law), until the sojourn time falls below ``target``. Re-entering soon (within 16 intervals)
    resumes at ``count - lastcount``. With ``ecn=True`` an ECN-capable packet due to be dropped
    is delivered marked instead (:meth:`dequeue_verdict` says MARKED). Arrivals beyond ``limit``
    packets are the only enqueue drops. Bad parameters raise :class:`meshcore.ConfigError`.
    """

    def __new__(
        cls,
        target: float = 0.005,
        interval: float = 0.1,
        limit: int = 1000,
        *,
        mtu: int = 1514,
        ecn: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> CoDel: ...
    def enqueue(
        self,
        item: object,
        size: int | None = None,
        now: float | None = None,
        ecn_capable: bool = False,
    ) -> Verdict:
        """Queue ``item`` (``size`` bytes; default ``len(item)`` for bytes-like items, else
        ``mtu``): ENQUEUED, or DROPPED when ``limit`` packets are held."""

    def dequeue(self, now: float | None = None) -> Any:
        """The next delivered item (dropping heads as the control law says), or None."""

    def dequeue_verdict(self, now: float | None = None) -> tuple[Any, Verdict] | None:
        """As :meth:`dequeue`, with ENQUEUED (unchanged) or MARKED (set CE on it)."""

    def enqueue_many(
        self,
        sizes: _Sizes,
        times: _Times = None,
        ecn_capable: npt.ArrayLike | None = None,
        items: Iterable[object] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Queue a batch in order with the GIL released (arguments as
        :meth:`RedQueue.enqueue_many`); verdict codes 0 (enqueued) or 1 (dropped, overflow)."""

    def stats(self) -> _CodelStats:
        """Counters: enqueued, dequeued (marked included), drops, overlimit_drops, marks."""

    @property
    def backlog(self) -> int:
        """Bytes held."""

    @property
    def count(self) -> int:
        """Drops in the current (or latest) dropping state, as the control law counts."""

    @property
    def dropping(self) -> bool: ...
    @property
    def drop_next(self) -> float:
        """When the next drop is due while dropping (seconds, rounded up to the least float
        that converts back to it or later, so that a dequeue at ``drop_next`` is due)."""

    @property
    def target(self) -> float: ...
    @property
    def interval(self) -> float: ...
    @property
    def limit(self) -> int: ...
    @property
    def mtu(self) -> int: ...
    @property
    def ecn(self) -> bool: ...
    def __len__(self) -> int:
        """Packets held."""
