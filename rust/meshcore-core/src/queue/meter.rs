//! Three-colour meters: [`SrTcm`] (RFC 2697), [`TrTcm`] (RFC 2698) and [`TrTcm4115`] (RFC 4115).
//!
//! Sizes are bytes, rates bytes/s, bucket sizes bytes; every bucket starts full. The buckets
//! are [`Fluid`]s in one integer unit per meter (see [`scale`]), refilled continuously and
//! exactly: the RFCs' "incremented CIR times per second" taken to its limit, so a bucket holds
//! exactly `min(size, level + rate * elapsed)` at every nanosecond and nothing drifts.
//!
//! | meter | refill | colour-blind (`B` = packet size) |
//! |---|---|---|
//! | srTCM | C at CIR up to CBS; what C cannot hold overflows into E (up to EBS) | `Tc >= B`: green, `Tc -= B`; else `Te >= B`: yellow, `Te -= B`; else red |
//! | trTCM | P at PIR up to PBS, C at CIR up to CBS, independent | `Tp < B`: red; else `Tc < B`: yellow, `Tp -= B`; else green, `Tp -= B`, `Tc -= B` |
//! | RFC 4115 | C at CIR up to CBS, E at EIR up to EBS, independent | as srTCM |
//!
//! Colour-aware mode never upgrades: srTCM and RFC 4115 give green only to green packets and
//! yellow only to green or yellow ones; trTCM turns red input red and yellow input at best
//! yellow (spending only P). With all-green input it equals colour-blind mode.

use super::bucket::{elapsed, scale, Fluid};
use super::{Color, Nanos, ParamError, Ratio};

/// A colour meter.
pub trait Meter {
    /// The colour of a packet of `size` bytes at `now`, with pre-colour `pre` (used only by a
    /// colour-aware meter). The buckets are charged as the RFC says.
    fn color(&mut self, size: u64, now: Nanos, pre: Color) -> Color;

    /// [`color`](Meter::color) for each `(size, now, pre)` in turn; the colour codes go to
    /// `out` (which must be as long).
    fn color_each(&mut self, items: impl IntoIterator<Item = (u64, Nanos, Color)>, out: &mut [u8])
    where
        Self: Sized,
    {
        for ((size, now, pre), o) in items.into_iter().zip(out.iter_mut()) {
            *o = self.color(size, now, pre) as u8;
        }
    }
}

fn positive(x: Ratio, what: &str) -> Result<(), ParamError> {
    if x.is_zero() {
        Err(ParamError(format!("{what} must be > 0, got 0")))
    } else {
        Ok(())
    }
}

fn unit_for(rates: &[Ratio], sizes: &[Ratio]) -> Result<u128, ParamError> {
    scale(rates, sizes).ok_or_else(|| {
        ParamError(
            "the rates and bucket sizes are too precise to be kept exactly together \
             (keep them to a few significant digits, or pass ints or Fractions)"
                .into(),
        )
    })
}

/// `size` bytes in units (saturating: a size past every bucket never conforms).
#[inline]
fn units(size: u64, unit: u128) -> u128 {
    u128::from(size).saturating_mul(unit)
}

fn ratio(level: u128, unit: u128) -> Ratio {
    Ratio::new(level, unit).unwrap_or(Ratio::ZERO)
}

/// The state every meter here has: two buckets in one unit, the latest time seen and the mode.
/// `first` is C; `second` is E (srTCM, RFC 4115) or P (trTCM).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Buckets {
    unit: u128,
    first: Fluid,
    second: Fluid,
    /// srTCM: `second` fills only with what overflows `first`.
    spill: bool,
    last: Nanos,
    color_aware: bool,
}

impl Buckets {
    /// Buckets at `rates` holding `sizes` (`what` names the sizes in errors), starting full.
    fn new(
        rates: [Ratio; 2],
        sizes: [(Ratio, &str); 2],
        spill: bool,
        color_aware: bool,
    ) -> Result<Buckets, ParamError> {
        let unit = unit_for(&rates, &[sizes[0].0, sizes[1].0])?;
        Ok(Buckets {
            unit,
            first: Fluid::new(rates[0], sizes[0].0, unit, sizes[0].1)?,
            second: Fluid::new(rates[1], sizes[1].0, unit, sizes[1].1)?,
            spill,
            last: 0,
            color_aware,
        })
    }

    #[inline]
    fn advance(&mut self, now: Nanos) {
        let e = elapsed(&mut self.last, now);
        if self.spill {
            let spill = self.first.refill_spill(e);
            self.second.add(spill);
        } else {
            self.first.refill(e);
            self.second.refill(e);
        }
    }

    /// Refill to `now`; a packet of `size` bytes in units, and the pre-colour that counts.
    #[inline]
    fn arrive(&mut self, size: u64, now: Nanos, pre: Color) -> (u128, Color) {
        self.advance(now);
        let pre = if self.color_aware { pre } else { Color::Green };
        (units(size, self.unit), pre)
    }

    /// The levels of the two buckets in bytes at `now`.
    fn tokens_exact(&mut self, now: Nanos) -> (Ratio, Ratio) {
        self.advance(now);
        (
            ratio(self.first.level(), self.unit),
            ratio(self.second.level(), self.unit),
        )
    }

    /// srTCM and RFC 4115: green from C for green input, else yellow from E for green or
    /// yellow input, else red.
    #[inline]
    fn committed_then_excess(&mut self, size: u64, now: Nanos, pre: Color) -> Color {
        let (b, pre) = self.arrive(size, now, pre);
        if pre == Color::Green && self.first.take(b) {
            Color::Green
        } else if pre != Color::Red && self.second.take(b) {
            Color::Yellow
        } else {
            Color::Red
        }
    }
}

/// The single-rate three-colour marker (RFC 2697).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrTcm {
    cir: Ratio,
    cbs: Ratio,
    ebs: Ratio,
    b: Buckets,
}

impl SrTcm {
    /// `cir` > 0 bytes/s; `cbs`, `ebs` bytes, not both 0.
    pub fn new(cir: Ratio, cbs: Ratio, ebs: Ratio, color_aware: bool) -> Result<Self, ParamError> {
        positive(cir, "cir (bytes/s)")?;
        if cbs.is_zero() && ebs.is_zero() {
            return Err(ParamError("cbs and ebs must not both be 0 bytes".into()));
        }
        // E is filled only by what overflows C: its own rate is 0.
        let b = Buckets::new(
            [cir, Ratio::ZERO],
            [(cbs, "cbs"), (ebs, "ebs")],
            true,
            color_aware,
        )?;
        Ok(SrTcm { cir, cbs, ebs, b })
    }

    pub fn params(&self) -> (Ratio, Ratio, Ratio) {
        (self.cir, self.cbs, self.ebs)
    }

    pub fn color_aware(&self) -> bool {
        self.b.color_aware
    }

    /// The levels of C and E in bytes at `now`.
    pub fn tokens_exact(&mut self, now: Nanos) -> (Ratio, Ratio) {
        self.b.tokens_exact(now)
    }
}

impl Meter for SrTcm {
    #[inline]
    fn color(&mut self, size: u64, now: Nanos, pre: Color) -> Color {
        self.b.committed_then_excess(size, now, pre)
    }
}

/// The two-rate three-colour marker (RFC 2698).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrTcm {
    cir: Ratio,
    cbs: Ratio,
    pir: Ratio,
    pbs: Ratio,
    b: Buckets,
}

impl TrTcm {
    /// `pir` >= `cir` > 0 bytes/s; `cbs`, `pbs` > 0 bytes.
    pub fn new(
        cir: Ratio,
        cbs: Ratio,
        pir: Ratio,
        pbs: Ratio,
        color_aware: bool,
    ) -> Result<Self, ParamError> {
        positive(cir, "cir (bytes/s)")?;
        positive(cbs, "cbs (bytes)")?;
        positive(pbs, "pbs (bytes)")?;
        // a/b < c/d  <=>  a d < c b (u128 products of reduced terms that came from u128 parts
        // may overflow; compare as floats only when they would).
        let less = match (
            pir.num().checked_mul(cir.den()),
            cir.num().checked_mul(pir.den()),
        ) {
            (Some(l), Some(r)) => l < r,
            _ => pir.to_f64() < cir.to_f64(),
        };
        if less {
            return Err(ParamError(format!(
                "pir must be >= cir (RFC 2698), got pir = {pir}, cir = {cir} bytes/s"
            )));
        }
        let b = Buckets::new([cir, pir], [(cbs, "cbs"), (pbs, "pbs")], false, color_aware)?;
        Ok(TrTcm {
            cir,
            cbs,
            pir,
            pbs,
            b,
        })
    }

    pub fn params(&self) -> (Ratio, Ratio, Ratio, Ratio) {
        (self.cir, self.cbs, self.pir, self.pbs)
    }

    pub fn color_aware(&self) -> bool {
        self.b.color_aware
    }

    /// The levels of C and P in bytes at `now`.
    pub fn tokens_exact(&mut self, now: Nanos) -> (Ratio, Ratio) {
        self.b.tokens_exact(now)
    }
}

impl Meter for TrTcm {
    #[inline]
    fn color(&mut self, size: u64, now: Nanos, pre: Color) -> Color {
        let (b, pre) = self.b.arrive(size, now, pre);
        let (c, p) = (&mut self.b.first, &mut self.b.second);
        if pre == Color::Red || !p.holds(b) {
            Color::Red
        } else if pre == Color::Yellow || !c.holds(b) {
            p.take(b);
            Color::Yellow
        } else {
            p.take(b);
            c.take(b);
            Color::Green
        }
    }
}

/// The RFC 4115 two-rate meter: C at CIR and E at EIR, independent; green spends only C, so up
/// to CIR + EIR passes as green or yellow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrTcm4115 {
    cir: Ratio,
    cbs: Ratio,
    eir: Ratio,
    ebs: Ratio,
    b: Buckets,
}

impl TrTcm4115 {
    /// `cir`, `eir` >= 0 bytes/s, not both 0; `cbs`, `ebs` >= 0 bytes, not both 0.
    pub fn new(
        cir: Ratio,
        cbs: Ratio,
        eir: Ratio,
        ebs: Ratio,
        color_aware: bool,
    ) -> Result<Self, ParamError> {
        if cir.is_zero() && eir.is_zero() {
            return Err(ParamError("cir and eir must not both be 0 bytes/s".into()));
        }
        if cbs.is_zero() && ebs.is_zero() {
            return Err(ParamError("cbs and ebs must not both be 0 bytes".into()));
        }
        let b = Buckets::new([cir, eir], [(cbs, "cbs"), (ebs, "ebs")], false, color_aware)?;
        Ok(TrTcm4115 {
            cir,
            cbs,
            eir,
            ebs,
            b,
        })
    }

    pub fn params(&self) -> (Ratio, Ratio, Ratio, Ratio) {
        (self.cir, self.cbs, self.eir, self.ebs)
    }

    pub fn color_aware(&self) -> bool {
        self.b.color_aware
    }

    /// The levels of C and E in bytes at `now`.
    pub fn tokens_exact(&mut self, now: Nanos) -> (Ratio, Ratio) {
        self.b.tokens_exact(now)
    }
}

impl Meter for TrTcm4115 {
    #[inline]
    fn color(&mut self, size: u64, now: Nanos, pre: Color) -> Color {
        self.b.committed_then_excess(size, now, pre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::NANOS_PER_SEC as S;
    use crate::rand::Rng;
    use Color::{Green as G, Red as R, Yellow as Y};

    fn int(n: u128) -> Ratio {
        Ratio::integer(n)
    }

    fn run(m: &mut impl Meter, pkts: &[(u64, Nanos)]) -> Vec<Color> {
        pkts.iter().map(|&(b, t)| m.color(b, t, G)).collect()
    }

    /// RFC 2697 by hand: CIR 1000 B/s, CBS 1500, EBS 1000.
    #[test]
    fn srtcm_hand_vector() {
        let mut m = SrTcm::new(int(1000), int(1500), int(1000), false).unwrap();
        let colors = run(
            &mut m,
            &[
                (1000, 0),         // C 1500 -> G, C 500
                (800, 0),          // C 500 < 800, E 1000 -> Y, E 200
                (600, 0),          // C 500, E 200 < 600 -> R
                (1000, S / 2),     // +500: C 1000 -> G, C 0
                (1200, 3 * S / 2), // +1000: C 1000, E 200 < 1200 -> R
                (1000, 3 * S),     // +1500: C full at 1500, 1000 overflows, E 1000 -> G, C 500
                (1000, 3 * S),     // C 500 < 1000, E 1000 -> Y, E 0
                (600, 3 * S),      // R
            ],
        );
        assert_eq!(colors, [G, Y, R, G, R, G, Y, R]);
        assert_eq!(m.tokens_exact(3 * S), (int(500), int(0)));
    }

    /// RFC 2698 by hand: CIR 1000, CBS 1000, PIR 2000, PBS 2000.
    #[test]
    fn trtcm_hand_vector() {
        let mut m = TrTcm::new(int(1000), int(1000), int(2000), int(2000), false).unwrap();
        let colors = run(
            &mut m,
            &[
                (800, 0),  // P 2000, C 1000 -> G; P 1200, C 200
                (800, 0),  // P ok, C 200 < 800 -> Y; P 400
                (500, 0),  // P 400 < 500 -> R
                (400, 0),  // P 400 ok, C 200 < 400 -> Y; P 0
                (1000, S), // +1 s: P 2000, C 1000 -> G; P 1000, C 0
                (1000, S), // P 1000 ok, C 0 -> Y; P 0
                (1, S),    // R
            ],
        );
        assert_eq!(colors, [G, Y, R, Y, G, Y, R]);
    }

    /// RFC 4115 by hand: CIR 1000, CBS 1000, EIR 500, EBS 500.
    #[test]
    fn rfc4115_hand_vector() {
        let mut m = TrTcm4115::new(int(1000), int(1000), int(500), int(500), false).unwrap();
        let colors = run(
            &mut m,
            &[
                (1000, 0),     // C 1000 -> G, C 0
                (500, 0),      // E 500 -> Y, E 0
                (1, 0),        // R
                (500, S / 2),  // C 500 -> G (green does not spend E); E 250
                (250, S / 2),  // C 0, E 250 -> Y
                (1000, 2 * S), // C 1000 (capped) -> G; E 500
            ],
        );
        assert_eq!(colors, [G, Y, R, G, Y, G]);
        assert_eq!(m.tokens_exact(2 * S), (int(0), int(500)));
    }

    #[test]
    fn refuses_bad_parameters() {
        assert!(SrTcm::new(int(0), int(1), int(1), false).is_err());
        assert!(SrTcm::new(int(1), int(0), int(0), false).is_err());
        assert!(SrTcm::new(int(1), int(0), int(1), false).is_ok());
        let e = TrTcm::new(int(2), int(1), int(1), int(1), false).unwrap_err();
        assert!(e.0.contains("pir must be >= cir"), "{e}");
        assert!(TrTcm::new(int(1), int(0), int(1), int(1), false).is_err());
        assert!(TrTcm::new(int(1), int(1), int(1), int(0), false).is_err());
        assert!(TrTcm4115::new(int(0), int(1), int(0), int(1), false).is_err());
        assert!(TrTcm4115::new(int(0), int(1), int(1), int(1), false).is_ok());
        assert!(TrTcm4115::new(int(1), int(0), int(1), int(0), false).is_err());
    }

    /// P7 on random traffic: volume bounds, no yellow in the degenerate configurations, and
    /// colour-aware never upgrading.
    #[test]
    fn volume_bounds_and_awareness() {
        let mut rng = Rng::new(11);
        for case in 0..60 {
            let cir = 1 + u128::from(rng.next_u64() % 5000);
            let cbs = 1 + u128::from(rng.next_u64() % 3000);
            let ebs = u128::from(rng.next_u64() % 3000);
            let pir = cir + u128::from(rng.next_u64() % 5000);
            let pbs = 1 + u128::from(rng.next_u64() % 3000);
            let mut sr = SrTcm::new(int(cir), int(cbs), int(ebs), false).unwrap();
            let mut tr = TrTcm::new(int(cir), int(cbs), int(pir), int(pbs), false).unwrap();
            let mut rf = TrTcm4115::new(int(cir), int(cbs), int(pir), int(ebs), false).unwrap();
            let mut sr0 = SrTcm::new(int(cir), int(cbs), int(0), false).unwrap();
            let mut tr0 = TrTcm::new(int(cir), int(cbs), int(cir), int(cbs), false).unwrap();
            let mut sra = SrTcm::new(int(cir), int(cbs), int(ebs), true).unwrap();
            let mut tra = TrTcm::new(int(cir), int(cbs), int(pir), int(pbs), true).unwrap();
            let mut rfa = TrTcm4115::new(int(cir), int(cbs), int(pir), int(ebs), true).unwrap();
            let (mut t, mut vol) = (0u64, [[0u128; 3]; 3]);
            for _ in 0..400 {
                t += rng.next_u64() % (S / 20);
                let b = 1 + rng.next_u64() % 1500;
                let pre = Color::from_code((rng.next_u64() % 3) as u8).unwrap();
                for (k, c) in [sr.color(b, t, G), tr.color(b, t, G), rf.color(b, t, G)]
                    .into_iter()
                    .enumerate()
                {
                    vol[k][c as usize] += u128::from(b);
                }
                assert_ne!(sr0.color(b, t, G), Y, "case {case}");
                assert_ne!(tr0.color(b, t, G), Y, "case {case}");
                for c in [
                    sra.color(b, t, pre),
                    tra.color(b, t, pre),
                    rfa.color(b, t, pre),
                ] {
                    assert!(c >= pre);
                }
            }
            // Over [0, t]: rate * t as bytes, rounded up (t in ns).
            let up = |rate: u128| (rate * u128::from(t)).div_ceil(u128::from(S));
            assert!(vol[0][0] <= cbs + up(cir));
            assert!(vol[0][0] + vol[0][1] <= cbs + ebs + up(cir));
            assert!(vol[1][0] <= cbs + up(cir));
            assert!(vol[1][0] + vol[1][1] <= pbs + up(pir));
            assert!(vol[2][0] <= cbs + up(cir));
            assert!(vol[2][1] <= ebs + up(pir));
        }
    }

    #[test]
    fn aware_equals_blind_on_green_input() {
        let mut rng = Rng::new(5);
        let mut a = TrTcm::new(int(300), int(900), int(700), int(1200), true).unwrap();
        let mut b = TrTcm::new(int(300), int(900), int(700), int(1200), false).unwrap();
        let mut c = SrTcm::new(int(300), int(900), int(700), true).unwrap();
        let mut d = SrTcm::new(int(300), int(900), int(700), false).unwrap();
        let mut out = (vec![0u8; 500], vec![0u8; 500]);
        let pkts: Vec<(u64, Nanos, Color)> = (0..500u64)
            .map(|i| (1 + rng.next_u64() % 1000, i * (S / 100), G))
            .collect();
        a.color_each(pkts.iter().copied(), &mut out.0);
        b.color_each(pkts.iter().copied(), &mut out.1);
        assert_eq!(out.0, out.1);
        c.color_each(pkts.iter().copied(), &mut out.0);
        d.color_each(pkts.iter().copied(), &mut out.1);
        assert_eq!(out.0, out.1);
    }
}
