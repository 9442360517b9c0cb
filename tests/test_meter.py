"""The colour meters (RFC 2697, 2698, 4115) against exact Fraction models (reference P7), and
one hand-computed vector per RFC."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcore import Color, ConfigError, SrTCM, TrTCM, TrTCM4115

NS = 10**9
G, Y, R = Color.GREEN, Color.YELLOW, Color.RED


def secs(ns: int) -> float:
    t = ns / NS
    assert round(t * NS) == ns
    return t


class Model:
    """Two fluid buckets in exact rationals; ``kind`` picks the RFC's refill and colouring."""

    def __init__(
        self, kind: str, rates: tuple[Fraction, Fraction], sizes: tuple[Fraction, Fraction]
    ) -> None:
        self.kind, self.rates, self.sizes = kind, rates, sizes
        self.levels = list(sizes)
        self.last = 0

    def advance(self, ns: int) -> None:
        dt = Fraction(max(0, ns - self.last), NS)
        self.last = max(self.last, ns)
        (r0, r1), (s0, s1) = self.rates, self.sizes
        if self.kind == "sr":  # C overflows into E
            add = r0 * dt
            room = s0 - self.levels[0]
            self.levels[0] = min(s0, self.levels[0] + add)
            self.levels[1] = min(s1, self.levels[1] + max(Fraction(0), add - room))
        else:  # independent buckets
            self.levels[0] = min(s0, self.levels[0] + r0 * dt)
            self.levels[1] = min(s1, self.levels[1] + r1 * dt)

    def color(self, b: int, ns: int, pre: Color) -> Color:
        self.advance(ns)
        lv = self.levels
        if self.kind == "tr":  # levels = [Tc, Tp]
            if pre == R or lv[1] < b:
                return R
            if pre == Y or lv[0] < b:
                lv[1] -= b
                return Y
            lv[0] -= b
            lv[1] -= b
            return G
        if pre == G and lv[0] >= b:  # srTCM and RFC 4115: levels = [Tc, Te]
            lv[0] -= b
            return G
        if pre != R and lv[1] >= b:
            lv[1] -= b
            return Y
        return R


small = st.integers(0, 5000).map(Fraction) | st.fractions(
    min_value=0, max_value=5000, max_denominator=64
)
packets = st.lists(
    st.tuples(st.integers(0, NS // 5), st.integers(0, 2000), st.sampled_from([G, Y, R])),
    min_size=1,
    max_size=60,
)


def make(
    kind: str, p: tuple[Fraction, Fraction, Fraction, Fraction], aware: bool
) -> tuple[SrTCM | TrTCM | TrTCM4115, Model]:
    cir, cbs, xir, xbs = p
    if kind == "sr":
        return SrTCM(cir, cbs, xbs, color_aware=aware), Model(kind, (cir, Fraction(0)), (cbs, xbs))
    if kind == "tr":
        return TrTCM(cir, cbs, xir, xbs, color_aware=aware), Model(kind, (cir, xir), (cbs, xbs))
    return TrTCM4115(cir, cbs, xir, xbs, color_aware=aware), Model(kind, (cir, xir), (cbs, xbs))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["sr", "tr", "4115"]),
    st.tuples(small, small, small, small),
    st.booleans(),
    packets,
)
def test_meters_match_the_fraction_models(
    kind: str,
    p: tuple[Fraction, Fraction, Fraction, Fraction],
    aware: bool,
    pkts: list[tuple[int, int, Color]],
) -> None:
    cir, cbs, xir, xbs = p
    cir += 1  # keep each configuration valid for its RFC
    cbs += 1
    xbs += kind == "tr"
    if kind == "tr":
        xir += cir
    m, model = make(kind, (cir, cbs, xir, xbs), aware)
    ns, got, want, sizes, times, pres = 0, [], [], [], [], []
    for gap, b, pre in pkts:
        ns += gap
        c = m.color(b, secs(ns), pre)
        assert type(c) is Color
        got.append(c)
        want.append(model.color(b, ns, pre if aware else G))
        sizes.append(b)
        times.append(secs(ns))
        pres.append(int(pre))
    assert got == want
    again, _ = make(kind, (cir, cbs, xir, xbs), aware)
    codes = again.color_many(np.array(sizes), np.array(times), np.array(pres, dtype=np.uint8))
    assert codes.dtype == np.uint8
    assert codes.tolist() == [int(c) for c in want]


def test_srtcm_hand_vector() -> None:
    """RFC 2697: CIR 1000 B/s, CBS 1500, EBS 1000 (worked by hand in the comments)."""
    m = SrTCM(1000, 1500, 1000)
    seq = [
        (1000, 0.0, G),  # C 1500 -> 500
        (800, 0.0, Y),  # C 500 < 800; E 1000 -> 200
        (600, 0.0, R),  # C 500, E 200: neither holds 600
        (1000, 0.5, G),  # +500 -> C 1000 -> 0
        (1200, 1.5, R),  # +1000 -> C 1000; E 200
        (1000, 3.0, G),  # +1500: C fills to 1500, 1000 overflows into E (200 -> 1000); C -> 500
        (1000, 3.0, Y),  # C 500 < 1000; E 1000 -> 0
        (600, 3.0, R),
    ]
    assert [m.color(b, t) for b, t, _ in seq] == [c for _, _, c in seq]


def test_trtcm_hand_vector() -> None:
    """RFC 2698: CIR 1000, CBS 1000, PIR 2000, PBS 2000."""
    m = TrTCM(1000, 1000, 2000, 2000)
    seq = [
        (800, 0.0, G),  # P 2000, C 1000 -> P 1200, C 200
        (800, 0.0, Y),  # C 200 < 800 -> P 400
        (500, 0.0, R),  # P 400 < 500
        (400, 0.0, Y),  # P 400 -> 0
        (1000, 1.0, G),  # P 2000, C 1000 -> P 1000, C 0
        (1000, 1.0, Y),  # P 1000 -> 0
        (1, 1.0, R),
    ]
    assert [m.color(b, t) for b, t, _ in seq] == [c for _, _, c in seq]


def test_rfc4115_hand_vector() -> None:
    """RFC 4115: CIR 1000, CBS 1000, EIR 500, EBS 500."""
    m = TrTCM4115(1000, 1000, 500, 500)
    seq = [
        (1000, 0.0, G),  # C 1000 -> 0
        (500, 0.0, Y),  # E 500 -> 0
        (1, 0.0, R),
        (500, 0.5, G),  # C 500 -> 0 (green spends no E); E 250
        (250, 0.5, Y),  # E 250 -> 0
        (1000, 2.0, G),  # C capped at 1000
    ]
    assert [m.color(b, t) for b, t, _ in seq] == [c for _, _, c in seq]


def test_color_aware_hand_vector() -> None:
    sr = SrTCM(1000, 1000, 1000, color_aware=True)
    assert sr.color(100, 0.0, Y) is Y  # yellow never becomes green, though C is full
    assert sr.color(100, 0.0, R) is R
    assert sr.color(100, 0.0, G) is G
    tr = TrTCM(1000, 1000, 2000, 2000, color_aware=True)
    assert tr.color(100, 0.0, Y) is Y  # spends P only
    assert tr.color(1900, 0.0, G) is Y  # P 1900 holds it, C 1000 does not
    assert tr.color(1, 0.0, G) is R  # P is empty


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5000),
    st.integers(1, 3000),
    st.integers(0, 3000),
    st.integers(0, 5000),
    st.integers(1, 3000),
    st.lists(st.tuples(st.integers(0, NS // 20), st.integers(1, 1500)), min_size=1, max_size=200),
)
def test_volume_bounds_and_degenerate_configurations(
    cir: int, cbs: int, ebs: int, extra: int, pbs: int, seq: list[tuple[int, int]]
) -> None:
    """P7: green <= CBS + CIR T; green + yellow <= CBS + EBS + CIR T (srTCM) or PBS + PIR T
    (trTCM); yellow <= EBS + EIR T (RFC 4115); no yellow from srTCM with EBS = 0 or trTCM with
    PIR = CIR and PBS = CBS."""
    pir = cir + extra
    meters: list[SrTCM | TrTCM | TrTCM4115] = [
        SrTCM(cir, cbs, ebs),
        TrTCM(cir, cbs, pir, pbs),
        TrTCM4115(cir, cbs, pir, ebs),
    ]
    sizes = np.array([b for _, b in seq], dtype=np.int64)
    times = np.cumsum([g for g, _ in seq]) / NS
    t = Fraction(round(times[-1] * NS), NS)
    vol = []
    for m in meters:
        codes = m.color_many(sizes, times)
        vol.append([int(sizes[codes == k].sum()) for k in range(3)])
    assert vol[0][0] <= cbs + cir * t
    assert vol[0][0] + vol[0][1] <= cbs + ebs + cir * t
    assert vol[1][0] <= cbs + cir * t
    assert vol[1][0] + vol[1][1] <= pbs + pir * t
    assert vol[2][0] <= cbs + cir * t
    assert vol[2][1] <= ebs + pir * t
    assert 1 not in SrTCM(cir, cbs, 0).color_many(sizes, times)
    assert 1 not in TrTCM(cir, cbs, cir, cbs).color_many(sizes, times)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["sr", "tr", "4115"]),
    st.lists(
        st.tuples(st.integers(0, NS // 20), st.integers(1, 1500), st.sampled_from([0, 1, 2])),
        min_size=1,
        max_size=100,
    ),
)
def test_color_aware_never_upgrades_and_equals_blind_on_green(
    kind: str, seq: list[tuple[int, int, int]]
) -> None:
    p = (Fraction(800), Fraction(1200), Fraction(1500), Fraction(2000))
    sizes = np.array([b for _, b, _ in seq])
    times = np.cumsum([g for g, _, _ in seq]) / NS
    pres = np.array([c for _, _, c in seq], dtype=np.uint8)
    aware, _ = make(kind, p, True)
    assert np.all(aware.color_many(sizes, times, pres) >= pres)
    aware, _ = make(kind, p, True)
    blind, _ = make(kind, p, False)
    green = np.zeros(len(seq), dtype=np.uint8)
    assert aware.color_many(sizes, times, green).tolist() == blind.color_many(sizes, times).tolist()
    # Colour-blind meters ignore the pre-colour.
    blind, _ = make(kind, p, False)
    again, _ = make(kind, p, False)
    assert blind.color_many(sizes, times, pres).tolist() == again.color_many(sizes, times).tolist()


@pytest.mark.parametrize(
    ("make_meter", "message"),
    [
        (lambda: SrTCM(0, 1, 1), r"cir \(bytes/s\) must be > 0"),
        (lambda: SrTCM(1, 0, 0), "cbs and ebs must not both be 0"),
        (lambda: SrTCM(-1, 1, 1), "cir must be >= 0"),
        (lambda: TrTCM(2, 1, 1, 1), "pir must be >= cir"),
        (lambda: TrTCM(1, 0, 1, 1), r"cbs \(bytes\) must be > 0"),
        (lambda: TrTCM(1, 1, 1, 0), r"pbs \(bytes\) must be > 0"),
        (lambda: TrTCM4115(0, 1, 0, 1), "cir and eir must not both be 0"),
        (lambda: TrTCM4115(1, 0, 1, 0), "cbs and ebs must not both be 0"),
        (lambda: SrTCM(1, 1, 1, clock="now"), "clock must be a callable"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters(make_meter: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_meter()  # type: ignore[operator]


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_are_refused_as_not_finite(value: Decimal) -> None:
    makes: list[tuple[object, str]] = [
        (lambda: SrTCM(value, 1, 1), "cir"),
        (lambda: SrTCM(1, 1, value), "ebs"),
        (lambda: TrTCM(1, 1, value, 1), "pir"),
        (lambda: TrTCM4115(1, 1, value, 1), "eir"),
    ]
    for make, name in makes:
        with pytest.raises(
            ConfigError, match=rf"^{name} must be a finite number >= 0, got {value}$"
        ):
            make()  # type: ignore[operator]


def test_color_batches_refuse_bools_with_type_error() -> None:
    """numpy reads ``[0, True]`` as ``[0, 1]``, a yellow pre-colour: sizes, colours and times
    refuse bools by type, and nothing is metered."""
    m = SrTCM(1000, 1000, 0, color_aware=True)
    with pytest.raises(
        TypeError, match=r"^colors must be a one-dimensional integer array, not a bool \(row 1\)$"
    ):
        m.color_many([10, 10], [0.0, 0.0], [0, True])
    with pytest.raises(
        TypeError, match=r"^colors must be a one-dimensional integer array, not an array of bool$"
    ):
        m.color_many([10, 10], [0.0, 0.0], np.array([False, True]))
    with pytest.raises(
        TypeError, match=r"^sizes must be a one-dimensional integer array, not a bool \(row 0\)$"
    ):
        m.color_many([True, 10], [0.0, 0.0])
    with pytest.raises(
        TypeError, match=r"^times must be an array of seconds, not a bool \(row 1\)$"
    ):
        m.color_many([10, 10], [0.0, True])
    with pytest.raises(TypeError, match=r"^times must be an array of seconds, not text$"):
        m.color_many([10, 10], ["0.0", "0.5"])
    assert m.color(1000, 0.0) is G  # C is still full


def test_bad_arguments_and_batch_forms() -> None:
    m = SrTCM(1000, 1000, 0, color_aware=True)
    with pytest.raises(ConfigError, match="size must be >= 0 bytes"):
        m.color(-1, 0.0)
    with pytest.raises(ConfigError, match=r"color must be Color\.GREEN"):
        m.color(1, 0.0, 3)
    with pytest.raises(ConfigError, match=r"colors\[1\] = 7 is not Color.GREEN"):
        m.color_many(np.array([1, 1]), np.zeros(2), np.array([0, 7]))
    with pytest.raises(ConfigError, match=r"sizes\[0\] = -3 must be >= 0"):
        m.color_many(np.array([-3]), np.zeros(1))
    with pytest.raises(ConfigError, match="colors has 1 rows"):
        m.color_many(np.array([1, 1]), np.zeros(2), np.array([0]))
    late = np.full(9000, 100, dtype=np.int64)  # a bad row past the first chunk of rows
    late[8500] = -1
    with pytest.raises(ConfigError, match=r"sizes\[8500\] = -1"):
        m.color_many(late, np.zeros(9000))
    # Nothing was metered by the refused batches: C is still full.
    assert m.color(1000, 0.0) is G
    out = np.full(3, 9, dtype=np.uint8)
    assert m.color_many([10, 10, 10], [5.0, 5.0, 5.0], [2, 1, 0], out=out) is out
    assert out.tolist() == [2, 2, 0]  # red stays red; yellow finds no E; green is green
    assert m.color(1, 6.0, 1) is R  # an int pre-colour works too


def test_clock_properties_and_repr() -> None:
    now = [10.0]
    m = TrTCM(Fraction(1, 2), 3, 0.75, 4, clock=lambda: now[0])
    assert (m.cir, m.cbs, m.pir, m.pbs, m.color_aware) == (0.5, 3.0, 0.75, 4.0, False)
    assert m.color(3) is G
    assert m.color(1) is Y  # C empty, P 1 left
    assert m.color(1) is R
    now[0] = 12.0  # +2 s: C 1, P 1.5
    assert m.color(1) is G
    assert repr(m) == "TrTCM(cir=0.5, cbs=3, pir=0.75, pbs=4, color_aware=False)"
    s = SrTCM(100, 10, 20)
    assert (s.cir, s.cbs, s.ebs) == (100.0, 10.0, 20.0)
    assert s.color(10) is G  # the default clock
    r = TrTCM4115(1, 2, 3, 4, color_aware=True)
    assert (r.cir, r.cbs, r.eir, r.ebs, r.color_aware) == (1.0, 2.0, 3.0, 4.0, True)
