//! Queues, meters and active queue management, with time as an argument.
//!
//! Every function here takes the current time as integer nanoseconds ([`Nanos`]) from the caller;
//! nothing reads a clock. Rates and bucket sizes are exact rationals ([`Ratio`]), so token
//! arithmetic is done in integers and never drifts, however long a run is.
//!
//! Shared vocabulary:
//! - [`Ratio`]: an exact non-negative rational; [`Ratio::from_f64`] reads a float as the decimal
//!   it prints as (`0.1` is 1/10, not the binary fraction nearest to it), which is what a user who
//!   writes `rate=0.1` means.
//! - [`seconds_to_nanos`]: the one conversion of a time in seconds to [`Nanos`] (rounded to the
//!   nearest nanosecond); [`wait_seconds`] and [`seconds_at_least`] go back for waits and
//!   deadlines, rounding so that the float a caller adds up converts to the moment or later.
//! - [`Verdict`] (enqueued / dropped / marked) and [`Color`] (green / yellow / red).
//! - [`ParamError`]: a refused parameter, with a message that names it.

use std::cmp::Ordering;
use std::fmt;

pub mod codel;
pub mod red;
// Token buckets, GCRA, the pacing shaper and the colour meters.
pub mod bucket;
#[cfg(target_arch = "x86_64")]
mod lanes;
pub mod meter;
pub mod shaper;

/// A time in integer nanoseconds on the caller's clock (any origin; never negative).
pub type Nanos = u64;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A parameter the constructor refuses; the message names the parameter and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An exact non-negative rational `num / den`, kept in lowest terms (`den > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: u128,
    den: u128,
}

impl Ratio {
    pub const ZERO: Ratio = Ratio { num: 0, den: 1 };

    /// `num / den` in lowest terms; `None` when `den` is 0.
    pub fn new(num: u128, den: u128) -> Option<Ratio> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        Some(Ratio {
            num: num / g,
            den: den / g,
        })
    }

    /// The integer `n`.
    pub fn integer(n: u128) -> Ratio {
        Ratio { num: n, den: 1 }
    }

    pub fn num(self) -> u128 {
        self.num
    }

    pub fn den(self) -> u128 {
        self.den
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    /// The float `x` read as the shortest decimal that prints as `x` (Rust's `Display`, the same
    /// digits as Python's `repr`): `0.1` becomes 1/10 and `2.5e-7` becomes 1/4000000. `what`
    /// names the parameter in the error for a negative, infinite, NaN or too precise value.
    pub fn from_f64(x: f64, what: &str) -> Result<Ratio, ParamError> {
        if !x.is_finite() || x < 0.0 {
            return Err(ParamError(format!(
                "{what} must be a finite number >= 0, got {x}"
            )));
        }
        let text = format!("{x}");
        let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
        let too_big = || ParamError(format!("{what} = {x} is too large or too precise"));
        let mut num: u128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            num = num
                .checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(c - b'0')))
                .ok_or_else(too_big)?;
        }
        let exp = u32::try_from(frac_part.len()).map_err(|_| too_big())?;
        let den = 10u128.checked_pow(exp).ok_or_else(too_big)?;
        // den is a power of ten, never 0.
        Ratio::new(num, den).ok_or_else(too_big)
    }

    /// The nearest float.
    #[allow(clippy::cast_precision_loss)]
    pub fn to_f64(self) -> f64 {
        // Both parts may exceed 2**53; dividing the rounded parts is within 2 ulp, which is all
        // a float view needs (arithmetic stays in integers).
        self.num as f64 / self.den as f64
    }

    /// `self * k`, rounded up, or `None` on overflow.
    pub fn mul_ceil(self, k: u128) -> Option<u128> {
        let p = self.num.checked_mul(k)?;
        Some(p.div_ceil(self.den))
    }

    /// `self * k`, rounded down, or `None` on overflow.
    pub fn mul_floor(self, k: u128) -> Option<u128> {
        Some(self.num.checked_mul(k)? / self.den)
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// Asks for every cache line of `rows` to be brought into L2: a hint, which never faults and
/// changes nothing. Batch loops call it for the rows a couple of steps ahead, so that reading
/// the columns from memory overlaps the work on the steps before.
#[inline]
pub fn prefetch_rows<T>(rows: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let (p, bytes) = (rows.as_ptr().cast::<i8>(), std::mem::size_of_val(rows));
        // Every 64 bytes from the start (four lines a turn while four fit, which halves the
        // loop's instructions), then the last byte (whose line a step from an unaligned
        // start may miss). Addresses are only formed, never read.
        let mut at = 0;
        while at + 256 <= bytes {
            #[allow(unsafe_code)]
            // SAFETY: a prefetch is a hint and never faults, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at));
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at + 64));
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at + 128));
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at + 192));
            }
            at += 256;
        }
        while at < bytes {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at));
            }
            at += 64;
        }
        if bytes > 0 {
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(bytes - 1));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = rows;
}

/// `seconds` as integer nanoseconds, rounded to the nearest (halves away from zero); negative,
/// NaN and times past 9.2e18 ns (292 years) are refused. `what` names the argument in the error.
pub fn seconds_to_nanos(seconds: f64, what: &str) -> Result<Nanos, ParamError> {
    nanos_of_seconds(seconds).ok_or_else(|| {
        ParamError(format!(
            "{what} must be a time in seconds in [0, 9.2e9), got {seconds}"
        ))
    })
}

/// [`seconds_to_nanos`] without the message: `None` where it refuses.
#[inline]
pub fn nanos_of_seconds(seconds: f64) -> Option<Nanos> {
    let (ns, ok) = nanos_checked(seconds);
    ok.then_some(ns)
}

/// `seconds` in nanoseconds as [`seconds_to_nanos`] rounds them, and whether it accepts them
/// (the value means nothing when not), without branches and without a libm `round` call, for
/// batch loops that convert a whole column and look for the bad row only when the flag says
/// there is one.
#[inline]
// The casts are exact: 0 <= y < 2**63, and a truncated y below 2**52 (or a whole y) is a float.
#[allow(clippy::cast_sign_loss, clippy::cast_precision_loss)]
pub fn nanos_checked(seconds: f64) -> (Nanos, bool) {
    let y = seconds * 1e9;
    // round(y) in [0, 9.2e18) means y in (-0.5, 9.2e18) (y >= 2**53 is already whole); the
    // comparisons also refuse NaN.
    let ok = (y > -0.5) & (y < 9.2e18);
    // Truncation toward zero: 0 for y in (-0.5, 0), whose fraction is then below 0.5 too.
    let whole = y as i64;
    // y - trunc(y) is exact, so comparing it with 0.5 rounds exactly as f64::round does.
    let up = y - whole as f64 >= 0.5;
    ((whole as u64).wrapping_add(u64::from(up)), ok)
}

/// [`nanos_checked`] over a column: `out[i]` is `seconds[i]` in nanoseconds (meaningless for a
/// refused row), and the result whether every row is accepted. The same values as
/// [`nanos_checked`] bit for bit, computed without a float-to-integer conversion so that the
/// loop vectorizes (four rows at a time on CPUs with AVX2).
pub fn nanos_checked_into(seconds: &[f64], out: &mut [Nanos]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, the one feature `nanos_checked_avx2` is compiled for.
        return unsafe { nanos_checked_avx2(seconds, out) };
    }
    nanos_near_lanes(seconds, out) || nanos_checked_lanes(seconds, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn nanos_checked_avx2(seconds: &[f64], out: &mut [Nanos]) -> bool {
    nanos_near_lanes(seconds, out) || nanos_checked_lanes(seconds, out)
}

/// The common case of [`nanos_checked_into`] in fewer operations: when every row lies in
/// `[b, b + 2**51 - 1)` ns, where `b` is the first row's whole nanoseconds, below 9.19e18 (then
/// all are accepted),
/// `out` gets them as [`nanos_checked`] rounds them and the answer is `true`; else `false`
/// (and `out` means nothing). For a column of times from one clock, that is every column
/// that starts at a good time and never goes back before it.
#[inline(always)]
#[allow(clippy::inline_always)]
// the body of both copies above, vectorized in each
// The casts are exact: y0 in [0, 9.2e18), and its floor b is a float again (below 2**53 any
// whole number is; above it y0 is whole and b = y0).
#[allow(clippy::cast_sign_loss, clippy::cast_precision_loss, clippy::float_cmp)]
fn nanos_near_lanes(seconds: &[f64], out: &mut [Nanos]) -> bool {
    let Some(&first) = seconds.first() else {
        return true;
    };
    let y0 = first * 1e9;
    // Below 9.2e18 - 2**52, every row within 2**51 of b is below 9.2e18 too.
    if !((0.0..9.195_495_e18).contains(&y0)) {
        return false;
    }
    let b = y0 as u64;
    let bf = b as f64;
    let base = b.wrapping_sub(MAGIC.to_bits());
    // The bits of every row's r but MAGIC's: none at 51 or above when each r is in
    // [MAGIC, MAGIC + 2**51).
    let mut spread = 0u64;
    for (o, &s) in out.iter_mut().zip(seconds) {
        let y = s * 1e9;
        // y - b is exact when y >= b: below 2**53 both are multiples of y's spacing (b is
        // whole, and that spacing is at most 1) and the difference is no wider than y; above
        // it both are whole, and a difference below 2**53 is a float.
        let d = y - bf;
        // d + 2**52 rounds d to a whole k (halves to even); d - k is exact (|d - k| <= 1/2
        // and k <= 2d), so the halves rounded down are found and rounded up. r stays in
        // [MAGIC, MAGIC + 2**51) for d in [-1/4, 2**51 - 1/2) and leaves it for any other d
        // (NaN too). Below 0, only y in [b - 1/4, b) stays, and its nanosecond is b, k = 0.
        let r = d + MAGIC;
        let k = r - MAGIC;
        let half_down = d - k == 0.5;
        spread |= r.to_bits() ^ MAGIC.to_bits();
        *o = base
            .wrapping_add(r.to_bits())
            .wrapping_add(u64::from(half_down));
    }
    spread >> 51 == 0
}

/// `sizes` (in bytes) as `u32`s into `out` (of the same length), and whether every row is in
/// `0..2**32` (`out` then holds them all exactly; a row outside is truncated). One branch-free
/// pass, in vector lanes (eight rows at a time with AVX2), so that a column is checked and
/// converted at once.
pub fn sizes_checked_into(sizes: &[i64], out: &mut [u32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, the one feature `sizes_checked_avx2` is compiled for.
        return unsafe { sizes_checked_avx2(sizes, out) };
    }
    sizes_checked_lanes(sizes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sizes_checked_avx2(sizes: &[i64], out: &mut [u32]) -> bool {
    sizes_checked_lanes(sizes, out)
}

#[inline(always)]
#[allow(clippy::inline_always)]
// the body of both copies above, vectorized in each
// The low 32 bits are the value exactly when the high ones (of the row read as a u64) are 0.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn sizes_checked_lanes(sizes: &[i64], out: &mut [u32]) -> bool {
    let mut all = 0;
    for (o, &s) in out.iter_mut().zip(sizes) {
        *o = s as u32;
        all |= s as u64;
    }
    all >> 32 == 0
}

/// Whether [`nanos_checked`] accepts every row of `seconds`: one branch-free pass, in vector
/// lanes (four rows at a time with AVX2), for checking a column before it is used.
pub fn all_seconds(seconds: &[f64]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, the one feature `all_seconds_avx2` is compiled for.
        return unsafe { all_seconds_avx2(seconds) };
    }
    all_seconds_lanes(seconds)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn all_seconds_avx2(seconds: &[f64]) -> bool {
    all_seconds_lanes(seconds)
}

#[inline(always)]
#[allow(clippy::inline_always)] // the body of both copies above, vectorized in each
fn all_seconds_lanes(seconds: &[f64]) -> bool {
    // The test of `nanos_checked`.
    seconds.iter().fold(true, |all, &s| {
        let y = s * 1e9;
        all & (y > -0.5) & (y < 9.2e18)
    })
}

/// 2**52: below it, adding this rounds a float to a whole number held in the low mantissa bits.
const MAGIC: f64 = 4_503_599_627_370_496.0;

/// `(floor(x), floor(x) as an integer)` for `0 <= x < 2**52`, in float operations only.
#[inline(always)]
#[allow(clippy::inline_always)] // part of the loop body below, which must vectorize
fn floor_small(x: f64) -> (f64, u64) {
    // x + 2**52 lies in [2**52, 2**53), where floats are the whole numbers: the sum is x rounded
    // to a whole number (to nearest), and one less when that rounded up. Both are exact.
    let r = x + MAGIC;
    let f = r - if r - MAGIC > x { 1.0 } else { 0.0 };
    (f - MAGIC, f.to_bits() - MAGIC.to_bits())
}

#[inline(always)]
#[allow(clippy::inline_always)] // the body of both copies above, vectorized in each
fn nanos_checked_lanes(seconds: &[f64], out: &mut [Nanos]) -> bool {
    let mut good = true;
    for (o, &s) in out.iter_mut().zip(seconds) {
        let y = s * 1e9;
        let ok = (y > -0.5) & (y < 9.2e18);
        // An accepted y in (-0.5, 0) rounds to 0, as 0 does; refused rows compute junk from 0.
        let y = if ok { y.max(0.0) } else { 0.0 };
        // y in [0, 9.2e18): split at 2**32. y / 2**32 is exact (a power of two), and so is the
        // low part y - hi 2**32, which lies in [0, 2**32) (Sterbenz: hi 2**32 <= y <= 2 hi 2**32
        // when hi >= 1). floor(y) = hi 2**32 + floor(lo), and y - floor(y) = lo - floor(lo), so
        // the rounding test is the same exact comparison as in `nanos_checked`.
        let (hi, hi_int) = floor_small(y * (1.0 / 4_294_967_296.0));
        let lo = y - hi * 4_294_967_296.0;
        let (lo_floor, lo_int) = floor_small(lo);
        let up = lo - lo_floor >= 0.5;
        *o = (hi_int << 32) + lo_int + u64::from(up);
        good &= ok;
    }
    good
}

/// Integer nanoseconds as float seconds.
#[allow(clippy::cast_precision_loss)]
pub fn nanos_to_seconds(ns: Nanos) -> f64 {
    if ns < 1 << 53 {
        // One correctly rounded division: the float nearest to the exact time (below 104 days).
        ns as f64 / 1e9
    } else {
        (ns / NANOS_PER_SEC) as f64 + (ns % NANOS_PER_SEC) as f64 / 1e9
    }
}

/// Exactly how `seconds` (finite, >= 0) compares with `ns` nanoseconds.
fn cmp_seconds_nanos(seconds: f64, ns: u64) -> Ordering {
    // seconds = m 2**e exactly, with m < 2**53; compare m 1e9 2**e with ns in integers.
    let bits = seconds.to_bits();
    let (frac, biased) = (bits & ((1 << 52) - 1), (bits >> 52) & 0x7ff);
    let (m, e) = if biased == 0 {
        (frac, -1074)
    } else {
        // biased < 2047 for a finite float.
        (frac | 1 << 52, i32::try_from(biased).unwrap_or(0) - 1075)
    };
    // Below 2**83.
    let lhs = u128::from(m) * u128::from(NANOS_PER_SEC);
    let ns = u128::from(ns);
    if lhs == 0 || ns == 0 {
        return lhs.cmp(&ns);
    }
    let k = e.unsigned_abs();
    if e >= 0 {
        // lhs 2**e >= 2**128 > ns when the shift would overflow.
        if lhs.leading_zeros() <= k {
            Ordering::Greater
        } else {
            (lhs << k).cmp(&ns)
        }
    } else if ns.leading_zeros() <= k {
        // ns 2**k >= 2**128 > lhs.
        Ordering::Less
    } else {
        lhs.cmp(&(ns << k))
    }
}

/// The next float up from `x` (finite, >= +0; the positive floats are ordered as their bits).
fn step_up(x: f64) -> f64 {
    f64::from_bits(x.to_bits() + 1)
}

/// The wait in float seconds for a moment `target` (ns) seen from `now` (float seconds, whose
/// nanosecond is `now_ns`): the least float `w` at or above the exact wait `(target - now_ns)`
/// ns for which the float sum `now + w` converts ([`seconds_to_nanos`]) to `target` or later, so
/// that a caller who adds the wait to its time lands on or after the moment, however coarse
/// float times are at `now` (at 4e9 s they are 477 ns apart). 0 when `target <= now_ns`;
/// infinity when no accepted time reaches `target` (past 9.2e9 s).
pub fn wait_seconds(now: f64, now_ns: Nanos, target: u128) -> f64 {
    let Some(wait) = target.checked_sub(u128::from(now_ns)).filter(|&w| w > 0) else {
        return 0.0;
    };
    let Ok(wait) = u64::try_from(wait) else {
        return f64::INFINITY;
    };
    // Whether a time converts to the target or later.
    let reaches = |t: f64| {
        let (ns, ok) = nanos_checked(t);
        ok && u128::from(ns) >= target
    };
    let lands = |w: f64| reaches(now + w);
    // The least float at or above the exact wait (the nearest one may be just below it).
    let mut lo = nanos_to_seconds(wait);
    while cmp_seconds_nanos(lo, wait) == Ordering::Less {
        lo = step_up(lo);
    }
    if lands(lo) {
        return lo;
    }
    // A wait that lands: from `now` to a float time that converts to `target` or later (the
    // nearest float to it, or a few float steps on; none past the range). The difference is
    // exact when that time is at most 2 now (Sterbenz), else above `now`, so that a few more
    // steps of the wait move the sum.
    let mut at = nanos_to_seconds(u64::try_from(target).unwrap_or(u64::MAX));
    let mut steps = 0;
    while !reaches(at) {
        if steps == 8 {
            return f64::INFINITY;
        }
        at = step_up(at);
        steps += 1;
    }
    let mut hi = lo.max(at - now);
    while !lands(hi) {
        if steps == 16 {
            return f64::INFINITY;
        }
        hi = step_up(hi);
        steps += 1;
    }
    // `now + w` and its nanosecond grow with w, and every wait below hi is in range, so the
    // waits that land are those from some float on: find it between lo (not) and hi (lands).
    // Positive floats are ordered as their bits.
    let (mut a, mut b) = (lo.to_bits(), hi.to_bits());
    while b - a > 1 {
        let m = a + (b - a) / 2;
        if lands(f64::from_bits(m)) {
            b = m;
        } else {
            a = m;
        }
    }
    f64::from_bits(b)
}

/// The time `ns` as float seconds for a caller to wait until: the least float at or above it
/// that [`seconds_to_nanos`] converts to `ns` or later ([`wait_seconds`] from time 0).
pub fn seconds_at_least(ns: Nanos) -> f64 {
    wait_seconds(0.0, 0, u128::from(ns))
}

/// What a queue did with an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// Queued unchanged.
    Enqueued = 0,
    /// Refused (early drop, forced drop or overflow).
    Dropped = 1,
    /// Queued with its ECN field set to CE (RFC 3168) instead of being dropped.
    Marked = 2,
}

/// A meter's colour (RFC 2697, 2698, 4115).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Color {
    Green = 0,
    Yellow = 1,
    Red = 2,
}

impl Color {
    /// The colour with code 0, 1 or 2.
    pub fn from_code(code: u8) -> Option<Color> {
        match code {
            0 => Some(Color::Green),
            1 => Some(Color::Yellow),
            2 => Some(Color::Red),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    /// `sizes_checked_into` against a row-by-row `u32::try_from`, on every length up to a few
    /// vector widths and with one bad row at each position.
    #[test]
    fn sizes_checked_into_matches_try_from() {
        let edges = [
            0,
            1,
            1500,
            i64::from(u32::MAX),
            1 << 32,
            -1,
            i64::MIN,
            i64::MAX,
        ];
        let mut r = Rng::new(3);
        for n in 0..40 {
            let good: Vec<i64> = (0..n)
                .map(|_| i64::from(u32::try_from(r.below(1 << 32)).unwrap()))
                .collect();
            let mut out = vec![7u32; n];
            assert!(sizes_checked_into(&good, &mut out));
            assert!(good.iter().zip(&out).all(|(&s, &o)| i64::from(o) == s));
            for i in 0..n {
                for &e in &edges {
                    let mut v = good.clone();
                    v[i] = e;
                    let want = v.iter().all(|&s| u32::try_from(s).is_ok());
                    assert_eq!(
                        sizes_checked_into(&v, &mut out),
                        want,
                        "n {n}, row {i}, {e}"
                    );
                    if want {
                        assert!(v.iter().zip(&out).all(|(&s, &o)| i64::from(o) == s));
                    }
                }
            }
        }
    }

    #[test]
    fn ratio_reads_decimals() {
        let r = |x: f64| Ratio::from_f64(x, "x").unwrap();
        assert_eq!(r(0.1), Ratio::new(1, 10).unwrap());
        assert_eq!(r(1000.0), Ratio::integer(1000));
        assert_eq!(r(2.5e-7), Ratio::new(1, 4_000_000).unwrap());
        assert_eq!(r(0.0), Ratio::ZERO);
        assert_eq!(r(1.0 / 3.0).den(), 10u128.pow(16));
        assert!(Ratio::from_f64(-1.0, "rate").is_err());
        assert!(Ratio::from_f64(f64::NAN, "rate").is_err());
        assert!(Ratio::from_f64(f64::INFINITY, "rate").is_err());
        assert!(Ratio::from_f64(1e300, "rate").is_err());
        assert_eq!(r(0.7).mul_floor(10), Some(7));
        assert_eq!(r(0.7).mul_ceil(3), Some(3));
    }

    /// Times in seconds at the edges of the conversion to nanoseconds: signs, half
    /// nanoseconds, the range limit, 2**32 ns, 2**52 and non-finite values.
    const EDGE_SECONDS: [f64; 23] = [
        0.0,
        -0.0,
        1.5e-9,
        2.5e-9,
        -4e-10,
        -5e-10,
        -6e-10,
        0.1,
        9.2e9,
        9.199_999_999e9,
        9.1e9,
        1e10,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        5e-324,
        4.503_599_627_370_497e6,
        4.294_967_296,
        4.294_967_295_5,
        4.294_967_296_5,
        1.234_567_890_5,
    ];

    #[test]
    fn batch_conversion_rounds_like_f64_round() {
        let mut rng = Rng::new(1);
        let check = |x: f64| {
            // The reference: f64::round, then the range check.
            let r = (x * 1e9).round();
            #[allow(clippy::cast_sign_loss)]
            let want = (0.0..9.2e18).contains(&r).then_some(r as u64);
            assert_eq!(nanos_of_seconds(x), want, "{x:e}");
            let (ns, ok) = nanos_checked(x);
            assert_eq!(ok, want.is_some(), "{x:e}");
            if ok {
                assert_eq!(Some(ns), want, "{x:e}");
            }
        };
        for x in EDGE_SECONDS {
            check(x);
        }
        for _ in 0..100_000 {
            let bits = rng.next_u64();
            #[allow(clippy::cast_precision_loss)]
            let x = (bits >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((bits % 14) as i32 - 4);
            check(x);
            check(f64::from_bits(bits));
            // Halves of a nanosecond.
            #[allow(clippy::cast_precision_loss)]
            check(((bits % 1_000_000) as f64 + 0.5) * 1e-9);
        }
    }

    /// The column conversion equals `nanos_checked` on every row, on both copies (AVX2 and
    /// plain), at every length around the vector widths.
    #[test]
    fn column_conversion_equals_nanos_checked() {
        let mut rng = Rng::new(2);
        let mut xs = EDGE_SECONDS.to_vec();
        for _ in 0..200_000 {
            let bits = rng.next_u64();
            #[allow(clippy::cast_precision_loss)]
            xs.push((bits >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((bits % 15) as i32 - 4));
            xs.push(f64::from_bits(bits));
            #[allow(clippy::cast_precision_loss)]
            xs.push(((bits % 1_000_000_000_000) as f64 + 0.5) * 1e-9);
            // Halves of a nanosecond just around multiples of 2**32 ns.
            #[allow(clippy::cast_precision_loss)]
            xs.push((((bits % 2000) << 32) as f64 + (bits >> 40) as f64 - 8.5) * 1e-9);
        }
        let check = |xs: &[f64], out: &[u64], all: bool| {
            let mut want_all = true;
            for (&x, &ns) in xs.iter().zip(out) {
                let (want, ok) = nanos_checked(x);
                want_all &= ok;
                if ok {
                    assert_eq!(ns, want, "{x:e}");
                }
            }
            assert_eq!(all, want_all);
        };
        let mut out = vec![0; xs.len()];
        assert!(nanos_checked_into(&xs[..0], &mut out[..0]));
        for len in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33] {
            for start in 0..xs.len().min(64) {
                let (x, o) = (&xs[start..start + len], &mut out[..len]);
                let all = nanos_checked_into(x, o);
                check(x, o, all);
                let all = nanos_checked_lanes(x, o);
                check(x, o, all);
                if nanos_near_lanes(x, o) {
                    check(x, o, true);
                }
            }
        }
        let all = nanos_checked_into(&xs, &mut out);
        check(&xs, &out, all);
        let all = nanos_checked_lanes(&xs, &mut out);
        check(&xs, &out, all);
        // The check alone says the same, on every short window too.
        for w in xs.windows(5).take(2000) {
            assert_eq!(all_seconds(w), w.iter().all(|&x| nanos_checked(x).1));
        }
        assert_eq!(all_seconds(&xs), all);
        // Only good rows: the flag says so.
        let good: Vec<f64> = xs.iter().copied().filter(|&x| nanos_checked(x).1).collect();
        let mut out = vec![0; good.len()];
        assert!(nanos_checked_into(&good, &mut out));
        check(&good, &out, true);
    }

    /// Columns as clocks give them (a start anywhere up to past 2**53 ns, then small steps,
    /// halves of a nanosecond included): the short path takes them, exactly as
    /// `nanos_checked`; starts and steps that leave its range fall back and still convert.
    #[test]
    fn clock_columns_take_the_short_path() {
        let mut rng = Rng::new(3);
        let mut taken = 0;
        for case in 0..4000 {
            let bits = rng.next_u64();
            #[allow(clippy::cast_precision_loss)]
            let start = match case % 5 {
                0 => (bits % 1_000_000) as f64 * 1e-9,
                1 => (bits >> 11) as f64 / (1u64 << 53) as f64 * 1e7,
                2 => ((bits % 1_000_000_000) as f64 + 0.5) * 1e-9 + 86_400.0,
                // Around 2**53 ns and near the top of the accepted range.
                3 => (9_007_199_254_740_992.0 + (bits % 4096) as f64 - 2048.0) * 1e-9,
                _ => 9.2e9 - (bits % 1000) as f64 * 1e-3,
            };
            let len = 1 + (bits as usize >> 40) % 40;
            let mut t = start;
            let xs: Vec<f64> = (0..len)
                .map(|i| {
                    let step = rng.next_u64();
                    #[allow(clippy::cast_precision_loss)]
                    match (case / 5) % 4 {
                        0 => t += (step % 1000) as f64 * 1e-9,
                        1 => t += (step % 1000) as f64 * 0.5e-9,
                        // One row before the first: the long path.
                        2 if i == len / 2 => t = start - 1e-9,
                        _ => t += (step >> 11) as f64 / (1u64 << 53) as f64 * 1e-3,
                    }
                    t
                })
                .collect();
            let mut out = vec![0; len];
            let near = nanos_near_lanes(&xs, &mut out);
            taken += usize::from(near);
            if near {
                for (&x, &ns) in xs.iter().zip(&out) {
                    assert_eq!(nanos_checked(x), (ns, true), "case {case} {x:e}");
                }
            }
            let all = nanos_checked_into(&xs, &mut out);
            let mut want_all = true;
            for (&x, &ns) in xs.iter().zip(&out) {
                let (want, ok) = nanos_checked(x);
                want_all &= ok;
                if ok {
                    assert_eq!(ns, want, "case {case} {x:e}");
                }
            }
            assert_eq!(all, want_all, "case {case}");
        }
        // Most clock columns take it.
        assert!(taken > 2000, "{taken}");
        // Rows just before the first one's whole nanosecond, by less than a half: short path
        // or not, the same nanoseconds, and -0.5 ns (refused) is never taken.
        for xs in [
            [0.0, -5e-10, 1e-9],
            [0.0, -4.999_999_999_999_999e-10, 0.0],
            [1e-9, 5e-10, 1e-9],
            [3e-9, 2.5e-9, 2.500_000_000_000_001e-9],
            [0.0, -0.0, 0.0],
            [0.0, f64::from_bits(5e-10f64.to_bits() - 1), 1.5e-9],
            [2.0, f64::from_bits(2.0f64.to_bits() - 1), 2.000_000_000_5],
        ] {
            let mut out = [0; 3];
            let near = nanos_near_lanes(&xs, &mut out);
            for (&x, &ns) in xs.iter().zip(&out) {
                let (want, ok) = nanos_checked(x);
                assert!(ok || !near, "{xs:?}");
                if near {
                    assert_eq!(ns, want, "{xs:?}");
                }
            }
        }
    }

    #[test]
    fn seconds_compare_exactly_with_nanos() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        // 0.1 is 0.1000000000000000055..., 0.3 is 0.2999999999999999888...
        assert_eq!(cmp_seconds_nanos(0.1, 100_000_000), Greater);
        assert_eq!(cmp_seconds_nanos(0.3, 300_000_000), Less);
        assert_eq!(cmp_seconds_nanos(1.0, NANOS_PER_SEC), Equal);
        assert_eq!(cmp_seconds_nanos(0.0, 0), Equal);
        assert_eq!(cmp_seconds_nanos(5e-324, 0), Greater);
        assert_eq!(cmp_seconds_nanos(5e-324, 1), Less);
        assert_eq!(cmp_seconds_nanos(1e300, u64::MAX), Greater);
        assert_eq!(cmp_seconds_nanos(1.8e10, u64::MAX), Less);
        assert_eq!(cmp_seconds_nanos(4e9, 4_000_000_000_000_000_000), Equal);
    }

    /// `wait_seconds` gives the least float at or above the exact wait whose sum with `now`
    /// converts to the target or later, at every scale of `now` (the float sum rounds to
    /// hundreds of nanoseconds at 4e9 s).
    #[test]
    #[allow(clippy::float_cmp)] // exact answers: 0 and infinity
    fn waits_land_on_their_target() {
        let mut rng = Rng::new(4);
        let check = |now: f64, wait: u64| {
            let now_ns = nanos_of_seconds(now).unwrap();
            let target = u128::from(now_ns) + u128::from(wait);
            let w = wait_seconds(now, now_ns, target);
            if wait == 0 {
                assert_eq!(w, 0.0);
                return;
            }
            let lands =
                |w: f64| nanos_of_seconds(now + w).is_some_and(|ns| u128::from(ns) >= target);
            if !w.is_finite() {
                // Only when the target lies past the range of times.
                assert!(target > 9_199_999_000_000_000_000, "{now:e} {wait}");
                return;
            }
            assert!(lands(w), "{now:e} {wait} {w:e}");
            assert_ne!(cmp_seconds_nanos(w, wait), Ordering::Less, "{now:e} {wait}");
            let below = f64::from_bits(w.to_bits() - 1);
            assert!(cmp_seconds_nanos(below, wait) == Ordering::Less || !lands(below));
        };
        // 1 ms at 1000 tokens/s, seen 130 ns after the bucket emptied, at 4e9 s.
        check(4_000_000_000.000_13, 999_870);
        for _ in 0..20_000 {
            let bits = rng.next_u64();
            #[allow(clippy::cast_precision_loss)]
            let now = (bits >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((bits % 11) as i32);
            let now = now.min(9.19e9);
            let wait = match rng.next_u64() % 4 {
                0 => rng.next_u64() % 1000,
                1 => rng.next_u64() % 10_000_000,
                2 => rng.next_u64() % (1 << 50),
                _ => rng.next_u64() % (1 << 62),
            };
            check(now, wait);
        }
        // Deadlines from 0: the least float at or above, converting to the time or later.
        for ns in [
            0,
            1,
            3,
            100_000_000,
            300_000_000,
            1 << 53,
            (1 << 53) + 1,
            4_000_000_000_000_000_130,
        ] {
            let s = seconds_at_least(ns);
            assert!(nanos_of_seconds(s).unwrap() >= ns, "{ns}");
            assert_ne!(cmp_seconds_nanos(s, ns), Ordering::Less, "{ns}");
        }
        assert_eq!(seconds_at_least(9_300_000_000_000_000_000), f64::INFINITY);
        assert_eq!(
            wait_seconds(1.0, NANOS_PER_SEC, u128::from(u64::MAX) + 7),
            f64::INFINITY
        );
    }

    #[test]
    fn seconds_round_trip() {
        assert_eq!(seconds_to_nanos(0.1, "now"), Ok(100_000_000));
        assert_eq!(seconds_to_nanos(1.5e-9, "now"), Ok(2));
        assert!(seconds_to_nanos(-1e-3, "now").is_err());
        assert!(seconds_to_nanos(f64::NAN, "now").is_err());
        assert!(seconds_to_nanos(1e10, "now").is_err());
        assert!((nanos_to_seconds(123_456_789_012) - 123.456_789_012).abs() < 1e-12);
    }
}
