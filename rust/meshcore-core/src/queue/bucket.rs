//! Token buckets and the GCRA, in exact integer arithmetic.
//!
//! - [`TokenBucket`]: rate `r` tokens/s and capacity `b` tokens (both exact [`Ratio`]s), starting
//!   full. The level is an integer count of *units*, with `unit` units to a token, where `unit`
//!   is the least integer that makes the capacity and the refill per nanosecond whole numbers
//!   (see [`scale`]). Refill over `e` ns is `e * per_ns` units exactly, saturating at the
//!   capacity, so the bucket never drifts: over any run it admits exactly what the fluid model
//!   `A(s, t] <= b + r (t - s)` admits. A cost of `n` tokens conforms iff `level >= n * unit`.
//! - [`Gcra`]: ITU-T I.371 virtual scheduling with the theoretical arrival time (TAT) in integer
//!   ns. Written independently of the token bucket, so the equivalence
//!   `Gcra(T, tau) == TokenBucket(1/T, 1 + tau/T)` is a real test of both.
//! - [`Fluid`]: the one bucket (capacity, refill rate, level) the buckets and the colour meters
//!   share.
//!
//! Invariants: `level <= cap < 2**126`; time going backwards counts as no time elapsed; nothing
//! here panics or reads a clock.

use super::{Nanos, ParamError, Ratio, NANOS_PER_SEC};

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The largest capacity or refill step kept in units: the sum of the two still fits a `u128`
/// with room, so refills never overflow.
const MAX_UNITS: u128 = 1 << 126;

/// The least `unit` (units per token or byte) for which every rate in `rates` (per second) adds
/// a whole number of units per nanosecond and every size in `sizes` is a whole number of units;
/// `None` if it does not fit.
pub fn scale(rates: &[Ratio], sizes: &[Ratio]) -> Option<u128> {
    let mut unit: u128 = 1;
    let per_ns_dens = rates.iter().map(|r| {
        // r / 1e9 per ns; its reduced denominator must divide `unit`.
        r.den()
            .checked_mul(u128::from(NANOS_PER_SEC))
            .and_then(|d| Ratio::new(r.num(), d))
            .map(Ratio::den)
    });
    for den in per_ns_dens.chain(sizes.iter().map(|s| Some(s.den()))) {
        let den = den?;
        unit = (unit / gcd(unit, den)).checked_mul(den)?;
    }
    Some(unit)
}

/// One bucket: a level in units that refills at `per_ns` units a nanosecond up to `cap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fluid {
    cap: u128,
    per_ns: u128,
    /// Nanoseconds from empty to full (`u64::MAX` when the rate is 0): any longer idle time
    /// fills the bucket without a multiplication that could overflow.
    fill_ns: u64,
    level: u128,
}

impl Fluid {
    /// A full bucket of `size` at `rate` per second, in units of `1/unit`; `what` names the
    /// size parameter in the error.
    pub fn new(rate: Ratio, size: Ratio, unit: u128, what: &str) -> Result<Fluid, ParamError> {
        let too_precise = || {
            ParamError(format!(
                "{what} = {size} at rate {rate} is too large or too precise to be kept exactly \
                 (keep rates and sizes to a few significant digits, or pass ints or Fractions)"
            ))
        };
        let cap = size
            .num()
            .checked_mul(unit / size.den())
            .filter(|&c| c < MAX_UNITS)
            .ok_or_else(too_precise)?;
        // rate * unit / 1e9 is whole by the choice of unit.
        let per_ns = rate
            .num()
            .checked_mul(unit)
            .map(|p| p / rate.den() / u128::from(NANOS_PER_SEC))
            .filter(|&p| p < MAX_UNITS)
            .ok_or_else(too_precise)?;
        let fill_ns = if per_ns == 0 {
            u64::MAX
        } else {
            u64::try_from(cap.div_ceil(per_ns)).unwrap_or(u64::MAX)
        };
        Ok(Fluid {
            cap,
            per_ns,
            fill_ns,
            level: cap,
        })
    }

    pub fn cap(&self) -> u128 {
        self.cap
    }

    pub fn level(&self) -> u128 {
        self.level
    }

    pub fn per_ns(&self) -> u128 {
        self.per_ns
    }

    /// Add `elapsed` ns of refill, up to the capacity.
    #[inline]
    pub fn refill(&mut self, elapsed: u64) {
        if elapsed >= self.fill_ns {
            self.level = self.cap;
        } else {
            // elapsed < cap / per_ns, so the product is below cap and the sum below 2 cap.
            self.level = (self.level + u128::from(elapsed) * self.per_ns).min(self.cap);
        }
    }

    /// Add `elapsed` ns of refill and return the units that did not fit (saturating).
    #[inline]
    pub fn refill_spill(&mut self, elapsed: u64) -> u128 {
        if elapsed < self.fill_ns {
            // Below cap, as in `refill`: no overflow check needed.
            self.add(u128::from(elapsed) * self.per_ns)
        } else {
            self.add(u128::from(elapsed).saturating_mul(self.per_ns))
        }
    }

    /// Add `units` (refill spilled from another bucket) and return what did not fit.
    #[inline]
    pub fn add(&mut self, units: u128) -> u128 {
        let room = self.cap - self.level;
        if units <= room {
            self.level += units;
            0
        } else {
            self.level = self.cap;
            units - room
        }
    }

    /// Take `units` if the level holds them.
    #[inline]
    pub fn take(&mut self, units: u128) -> bool {
        if self.level >= units {
            self.level -= units;
            true
        } else {
            false
        }
    }

    /// Whether the level holds `units`.
    #[inline]
    pub fn holds(&self, units: u128) -> bool {
        self.level >= units
    }

    /// Nanoseconds until the level holds `units` (0 if it does now; `u64::MAX` if never, or
    /// if the wait does not fit a u64).
    pub fn wait_ns(&self, units: u128) -> u64 {
        if self.level >= units {
            0
        } else if units > self.cap || self.per_ns == 0 {
            u64::MAX
        } else {
            u64::try_from((units - self.level).div_ceil(self.per_ns)).unwrap_or(u64::MAX)
        }
    }
}

/// Elapsed time since `*last`, advancing `*last`; time going backwards is no time elapsed.
#[inline]
pub fn elapsed(last: &mut Nanos, now: Nanos) -> u64 {
    let e = now.saturating_sub(*last);
    *last = (*last).max(now);
    e
}

/// One row of a cost column: a `u64`, or an `i64` read as one (a negative cost is then above
/// any `max_cost`, so it is refused like one).
pub trait CostRow: Copy {
    fn cost(self) -> u64;

    /// The column as the u64 words `cost` reads, when its rows are 8-byte integers (for loops
    /// that load several rows at once).
    fn words(_column: &[Self]) -> Option<&[u64]> {
        None
    }
}

impl CostRow for u64 {
    #[inline]
    fn cost(self) -> u64 {
        self
    }

    fn words(column: &[u64]) -> Option<&[u64]> {
        Some(column)
    }
}

impl CostRow for i64 {
    #[inline]
    #[allow(clippy::cast_sign_loss)] // the point: negative costs become huge ones
    fn cost(self) -> u64 {
        self as u64
    }

    #[allow(unsafe_code)]
    fn words(column: &[i64]) -> Option<&[u64]> {
        // SAFETY: i64 and u64 have the same size and alignment and every bit pattern is a
        // valid u64; the new slice borrows the same memory for the same lifetime.
        Some(unsafe { std::slice::from_raw_parts(column.as_ptr().cast::<u64>(), column.len()) })
    }
}

impl<C: CostRow> CostRow for &C {
    #[inline]
    fn cost(self) -> u64 {
        (*self).cost()
    }
}

/// Whether no row of `costs` is above `max` (an `i64` row is read as a `u64`, so with `max`
/// below 2**63 a negative row counts as above). One branch-free pass, in vector lanes (four
/// rows at a time with AVX2), for checking a column before it is used.
pub fn all_at_most<C: CostRow>(costs: &[C], max: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, the one feature `all_at_most_avx2` is compiled for.
        return unsafe { all_at_most_avx2(costs, max) };
    }
    all_at_most_lanes(costs, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn all_at_most_avx2<C: CostRow>(costs: &[C], max: u64) -> bool {
    all_at_most_lanes(costs, max)
}

#[inline(always)]
#[allow(clippy::inline_always)] // the body of both copies above, vectorized in each
fn all_at_most_lanes<C: CostRow>(costs: &[C], max: u64) -> bool {
    costs.iter().fold(true, |all, c| all & (c.cost() <= max))
}

// The steps of the column loops.

/// The units a cost of `n` tokens needs, or more than any level (2**63 - 1) when `n` exceeds
/// `max_cost` (`max_cost * unit <= cap < 2**62`).
#[inline]
fn need(n: u64, max_cost: u64, unit: u64) -> u64 {
    if n <= max_cost {
        n * unit
    } else {
        i64::MAX as u64
    }
}

/// Take `need` from `level` (both below 2**63) if it holds them: the new level, and whether it
/// did.
#[inline]
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
fn take(level: u64, need: u64) -> (u64, bool) {
    let d = level.wrapping_sub(need) as i64;
    // All ones when short (level < need): then add `need` back.
    let short = d >> 63;
    ((d + (need as i64 & short)) as u64, short == 0)
}

/// Rows per block of [`plan_block`] and [`take_block`] in the column loop without AVX2: small
/// enough to stay in L1 next to the columns, large enough that a block that must take the
/// general loop is rare.
const GAP_ROWS: usize = 256;

/// A block of rows `take_block` can run: the times never go back (from `last` on) and no cost
/// is above `max_cost`. Then `gaps[i]` (`gaps` as long as `times`) is the time since the row
/// before, at most `max_gap`, and the answer `true`; else `false` (`gaps` then means nothing).
/// Branch-free, so it runs in vector lanes (four rows at a time with AVX2).
fn plan_block<C: CostRow>(
    (last, times, max_gap): (Nanos, &[Nanos], u64),
    (costs, max_cost): (&[C], u64),
    gaps: &mut [u64],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, the one feature `plan_block_avx2` is compiled for.
        return unsafe { plan_block_avx2((last, times, max_gap), (costs, max_cost), gaps) };
    }
    plan_block_lanes((last, times, max_gap), (costs, max_cost), gaps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn plan_block_avx2<C: CostRow>(
    times: (Nanos, &[Nanos], u64),
    costs: (&[C], u64),
    gaps: &mut [u64],
) -> bool {
    plan_block_lanes(times, costs, gaps)
}

#[inline(always)]
#[allow(clippy::inline_always)] // the body of both copies above, vectorized in each
fn plan_block_lanes<C: CostRow>(
    (last, times, max_gap): (Nanos, &[Nanos], u64),
    (costs, max_cost): (&[C], u64),
    gaps: &mut [u64],
) -> bool {
    let (Some(&first), Some(g0)) = (times.first(), gaps.first_mut()) else {
        return true;
    };
    *g0 = first.wrapping_sub(last).min(max_gap);
    let mut good = first >= last;
    for ((g, &t), &before) in gaps[1..].iter_mut().zip(&times[1..]).zip(times) {
        good &= t >= before;
        *g = t.wrapping_sub(before).min(max_gap);
    }
    costs
        .iter()
        .fold(good, |good, c| good & (c.cost() <= max_cost))
}

/// One block of rows whose refills are known (`gaps[i]` ns, at most the time to fill), in the
/// virtual-scheduling form: the level is `cap - (f - t)` where `t` counts the units refilled
/// since the block began and `f >= t` is the count at which the bucket would be full again.
/// Refill is then `f = max(f, t)` (saturation at `cap` included, without a branch: with real
/// arrivals the bucket is full at irregular rows) and a take adds to `f`, so the loop carries
/// one value through a max, a compare and a select. Returns the level after.
/// Needs `GAP_ROWS * (cap + per_ns) < 2**62` (so `t`, `f` and the sums fit an i64). Not
/// inlined: on its own the loop keeps every value in a register.
#[inline(never)]
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)] // all values below 2**62, shown above
fn take_block<C: CostRow>(
    level: u64,
    costs: &[C],
    gaps: &[u64],
    (cap, per_ns, unit): (u64, u64, u64),
    out: &mut [bool],
) -> u64 {
    let cap_i = cap as i64;
    let (per_ns, unit) = (per_ns as i64, unit as i64);
    let mut f = (cap - level) as i64;
    let mut t = 0i64;
    for ((c, &e), o) in costs.iter().zip(gaps).zip(out.iter_mut()) {
        t += e as i64 * per_ns;
        // A take of `need` conforms iff max(f, t) + need <= t + cap.
        let need = c.cost() as i64 * unit;
        let x = f.max(t);
        let ok = x <= t + cap_i - need;
        f = if ok { x + need } else { x };
        *o = ok;
    }
    cap - (f.max(t) - t) as u64
}

/// Rows at a time the column loops run one at a time when the lanes' answers change every
/// few rows.
#[cfg(target_arch = "x86_64")]
const CHURN_ROWS: usize = 64;

/// The column loop one row at a time, for buckets below 2**62 units that refill less than
/// 2**62 units a nanosecond: any rows (times going back, costs above `max_cost`).
#[inline]
fn plain_rows<C: CostRow>(
    (level, last): (&mut u64, &mut Nanos),
    (costs, times, out): (&[C], &[Nanos], &mut [bool]),
    (cap, unit, per_ns, fill_ns, max_cost): (u64, u64, u64, u64, u64),
) {
    for ((c, &now), o) in costs.iter().zip(times).zip(out.iter_mut()) {
        let t = (*last).max(now);
        // Time going backwards is no time; refill for at most fill_ns (which fills the
        // bucket): fill < cap + per_ns < 2**63.
        let fill = (t - *last).min(fill_ns) * per_ns;
        *last = t;
        // The compiler may branch on the min and the take.
        let lvl = (*level + fill).min(cap);
        let need = need(c.cost(), max_cost, unit);
        let ok = lvl >= need;
        *level = if ok { lvl - need } else { lvl };
        *o = ok;
    }
}

/// `n` tokens against a capacity of `burst` tokens: the error for a cost that can never conform.
fn never(n: u64, burst: impl std::fmt::Display) -> ParamError {
    ParamError(format!(
        "n = {n} exceeds the burst of {burst} tokens: it can never conform"
    ))
}

/// A token bucket: `rate` tokens/s, capacity `burst` tokens, full at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Ratio,
    burst: Ratio,
    /// Units per token.
    unit: u128,
    /// The largest whole cost that can ever conform: floor(burst).
    max_cost: u64,
    bucket: Fluid,
    last: Nanos,
}

impl TokenBucket {
    /// `rate` > 0 tokens/s, `burst` > 0 tokens.
    pub fn new(rate: Ratio, burst: Ratio) -> Result<TokenBucket, ParamError> {
        if rate.is_zero() {
            return Err(ParamError("rate must be > 0 tokens/s, got 0".into()));
        }
        if burst.is_zero() {
            return Err(ParamError("burst must be > 0 tokens, got 0".into()));
        }
        let unit = scale(&[rate], &[burst]).ok_or_else(|| {
            ParamError(format!(
                "rate = {rate} and burst = {burst} are too precise to be kept exactly"
            ))
        })?;
        let bucket = Fluid::new(rate, burst, unit, "burst")?;
        let max_cost = u64::try_from(burst.num() / burst.den()).unwrap_or(u64::MAX);
        Ok(TokenBucket {
            rate,
            burst,
            unit,
            max_cost,
            bucket,
            last: 0,
        })
    }

    pub fn rate(&self) -> Ratio {
        self.rate
    }

    pub fn burst(&self) -> Ratio {
        self.burst
    }

    /// Units per token.
    pub fn unit(&self) -> u128 {
        self.unit
    }

    /// The largest cost that can ever conform (floor of the burst).
    pub fn max_cost(&self) -> u64 {
        self.max_cost
    }

    /// The error for a cost above [`max_cost`](Self::max_cost), if `n` is one.
    #[inline]
    pub fn check_cost(&self, n: u64) -> Result<(), ParamError> {
        if n > self.max_cost {
            Err(never(n, self.burst))
        } else {
            Ok(())
        }
    }

    #[inline]
    fn advance(&mut self, now: Nanos) {
        let e = elapsed(&mut self.last, now);
        self.bucket.refill(e);
    }

    /// Take `n` tokens at `now` if the bucket holds them; a cost above the burst is an error.
    #[inline]
    pub fn try_consume(&mut self, n: u64, now: Nanos) -> Result<bool, ParamError> {
        self.check_cost(n)?;
        self.advance(now);
        // n <= floor(burst), so n * unit <= cap.
        Ok(self.bucket.take(u128::from(n) * self.unit))
    }

    /// [`try_consume`](Self::try_consume) for each `(cost, now)` in turn, writing the answers to
    /// `out` (which must be as long). A cost above the burst is answered `false`; callers that
    /// must refuse it check [`max_cost`](Self::max_cost) first.
    #[inline]
    pub fn try_consume_each(
        &mut self,
        items: impl IntoIterator<Item = (u64, Nanos)>,
        out: &mut [bool],
    ) {
        // Below 2**63 units everything fits a u64: level <= cap, a refill step taken only
        // when elapsed < fill_ns is below cap, and a cost <= max_cost is at most cap units.
        let small = (
            u64::try_from(self.bucket.cap).ok().filter(|&c| c < 1 << 63),
            u64::try_from(self.unit),
        );
        if let (Some(cap), Ok(unit)) = small {
            self.try_consume_each_u64(items, out, cap, unit);
            return;
        }
        let max_cost = self.max_cost;
        let unit = self.unit;
        for ((n, now), o) in items.into_iter().zip(out.iter_mut()) {
            self.advance(now);
            *o = n <= max_cost && self.bucket.take(u128::from(n) * unit);
        }
    }

    /// The batch loop in u64 arithmetic, for buckets below 2**63 units (the common case).
    #[inline]
    fn try_consume_each_u64(
        &mut self,
        items: impl IntoIterator<Item = (u64, Nanos)>,
        out: &mut [bool],
        cap: u64,
        unit: u64,
    ) {
        // A rate above u64::MAX units/ns refills the bucket in any whole nanosecond.
        let per_ns = u64::try_from(self.bucket.per_ns()).unwrap_or(u64::MAX);
        let max_cost = self.max_cost;
        // level <= cap < 2**63 (checked by the caller).
        let mut level = u64::try_from(self.bucket.level()).unwrap_or(cap);
        let mut last = self.last;
        for ((n, now), o) in items.into_iter().zip(out.iter_mut()) {
            // Branch-free throughout: with real timestamps admit and deny interleave
            // irregularly, and a mispredicted branch costs more than the whole row.
            let e = now.saturating_sub(last);
            last = last.max(now);
            // level < 2**63 and a refill below cap < 2**63 cannot overflow the sum; a larger
            // refill saturates and the min takes cap.
            let fill = e.saturating_mul(per_ns);
            let lvl = level.saturating_add(fill).min(cap);
            let need = n.wrapping_mul(unit);
            let ok = (n <= max_cost) & (lvl >= need);
            level = lvl - if ok { need } else { 0 };
            *o = ok;
        }
        self.bucket.level = u128::from(level);
        self.last = last;
    }

    /// [`try_consume_each`](Self::try_consume_each) over columns: `costs[i]` at `times[i]`
    /// (rows past the shortest slice are left alone). The same answers and the same final
    /// state, in a loop over plain slices that keeps the bucket in registers.
    pub fn try_consume_rows<C: CostRow>(&mut self, costs: &[C], times: &[Nanos], out: &mut [bool]) {
        let n = out.len().min(costs.len()).min(times.len());
        let (costs, times, out) = (&costs[..n], &times[..n], &mut out[..n]);
        let Some((cap, unit)) = self.small() else {
            let rows = costs.iter().map(CostRow::cost).zip(times.iter().copied());
            self.try_consume_each(rows, out);
            return;
        };
        let per_ns = u64::try_from(self.bucket.per_ns).unwrap_or(u64::MAX);
        // Below 2**62 nothing below can overflow; larger buckets (or a refill of 2**62 units a
        // nanosecond) take the general loop.
        if cap >= 1 << 62 || per_ns >= 1 << 62 {
            let rows = costs.iter().map(CostRow::cost).zip(times.iter().copied());
            self.try_consume_each_u64(rows, out, cap, unit);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let (Some(words), Some(run)) = (
            C::words(costs),
            super::lanes::Run::new(cap, per_ns, unit, self.max_cost),
        ) {
            if std::is_x86_feature_detected!("avx2") {
                self.rows_in_lanes(words, times, out, &run);
                return;
            }
        }
        self.rows_in_blocks(costs, times, out, (cap, unit, per_ns));
    }

    /// [`try_consume_rows`](Self::try_consume_rows) four rows at a time where it can (see
    /// [`super::lanes`]), one at a time where not. The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)] // below 2**62, see lanes
    fn rows_in_lanes(
        &mut self,
        costs: &[u64],
        times: &[Nanos],
        out: &mut [bool],
        run: &super::lanes::Run,
    ) {
        let n = out.len().min(costs.len()).min(times.len());
        let (cap, per_ns, unit) = (run.cap, run.per_ns, run.unit);
        let mut level = u64::try_from(self.bucket.level).unwrap_or(cap);
        let mut last = self.last;
        let mut i = 0;
        // The first row at which to try a whole block again.
        let mut retry = 0;
        while i < n {
            if n - i >= 4 {
                // The count at the origin `last`: cap - level.
                let f = (cap - level) as i64;
                let end = (i + super::lanes::ALL_ROWS).min(n);
                if end - i == super::lanes::ALL_ROWS && i >= retry {
                    #[allow(unsafe_code)]
                    // SAFETY: the caller checked that the CPU has AVX2; both slices hold
                    // ALL_ROWS rows from i.
                    let all = unsafe {
                        super::lanes::take_all(&costs[i..end], &times[i..end], last, f, run)
                    };
                    if let Some(f) = all {
                        // As below: every time rose from `last` by less than 2**32 ns.
                        let now = times[end - 1];
                        let t = ((now - last) * per_ns) as i64;
                        level = cap - (f - t) as u64;
                        last = now;
                        out[i..end].fill(true);
                        i = end;
                        continue;
                    }
                }
                // Where the rows do not all fit, the bucket is short and likely to stay so
                // for a while: runs in lanes to the end (or until they stop), and no whole
                // block again for the next four.
                if i >= retry {
                    retry = i + 4 * super::lanes::ALL_ROWS;
                }
                let end = n;
                #[allow(unsafe_code)]
                // SAFETY: the caller checked that the CPU has AVX2.
                let (k, f, churn) = unsafe {
                    super::lanes::take_run(
                        &costs[i..end],
                        &times[i..end],
                        &mut out[i..end],
                        last,
                        f,
                        run,
                    )
                };
                if k > 0 {
                    // Rows i..i + k rose from `last` by less than 2**32 ns; f >= t, and
                    // f - t <= cap.
                    let now = times[i + k - 1];
                    let t = ((now - last) * per_ns) as i64;
                    level = cap - (f - t) as u64;
                    last = now;
                    i += k;
                }
                // Answers that change every few rows: a stretch one row at a time.
                let alone = if churn { CHURN_ROWS } else { 1 };
                let end = (i + alone).min(n);
                plain_rows(
                    (&mut level, &mut last),
                    (&costs[i..end], &times[i..end], &mut out[i..end]),
                    (cap, unit, per_ns, self.bucket.fill_ns, self.max_cost),
                );
                i = end;
                continue;
            }
            // Fewer than four rows left.
            plain_rows(
                (&mut level, &mut last),
                (&costs[i..n], &times[i..n], &mut out[i..n]),
                (cap, unit, per_ns, self.bucket.fill_ns, self.max_cost),
            );
            break;
        }
        self.bucket.level = u128::from(level);
        self.last = last;
    }

    /// [`try_consume_rows`](Self::try_consume_rows) in blocks of [`GAP_ROWS`] rows, each run by
    /// [`take_block`] when its times rise, else one row at a time. For buckets below 2**62
    /// units that refill less than 2**62 units a nanosecond.
    fn rows_in_blocks<C: CostRow>(
        &mut self,
        costs: &[C],
        times: &[Nanos],
        out: &mut [bool],
        (cap, unit, per_ns): (u64, u64, u64),
    ) {
        let (fill_ns, max_cost) = (self.bucket.fill_ns, self.max_cost);
        let mut level = u64::try_from(self.bucket.level).unwrap_or(cap);
        let mut last = self.last;
        let mut gaps = [0u64; GAP_ROWS];
        // A block's total refill (each row's below cap + per_ns) must fit `take_block`'s i64s.
        let blocks_fit = (cap + per_ns) < (1 << 62) / GAP_ROWS as u64;
        for ((c, t), o) in costs
            .chunks(GAP_ROWS)
            .zip(times.chunks(GAP_ROWS))
            .zip(out.chunks_mut(GAP_ROWS))
        {
            let g = &mut gaps[..t.len()];
            if blocks_fit && plan_block((last, t, fill_ns), (c, max_cost), g) {
                level = take_block(level, c, g, (cap, per_ns, unit), o);
                last = t.last().copied().unwrap_or(last);
                continue;
            }
            plain_rows(
                (&mut level, &mut last),
                (c, t, o),
                (cap, unit, per_ns, fill_ns, max_cost),
            );
        }
        self.bucket.level = u128::from(level);
        self.last = last;
    }

    /// [`try_consume_rows`](Self::try_consume_rows) with every row at the same time `now`: the
    /// bucket refills once, then each row only takes.
    pub fn try_consume_all_at<C: CostRow>(&mut self, costs: &[C], now: Nanos, out: &mut [bool]) {
        let n = out.len().min(costs.len());
        let (costs, out) = (&costs[..n], &mut out[..n]);
        if n == 0 {
            return;
        }
        let small = self.small().filter(|&(cap, _)| cap < 1 << 62);
        let Some((cap, unit)) = small else {
            self.try_consume_each(costs.iter().map(|c| (c.cost(), now)), out);
            return;
        };
        // The first row's refill; after it no time passes (`last >= now`).
        self.advance(now);
        let max_cost = self.max_cost;
        let mut level = u64::try_from(self.bucket.level).unwrap_or(cap);
        for (c, o) in costs.iter().zip(out.iter_mut()) {
            let (level_after, ok) = take(level, need(c.cost(), max_cost, unit));
            level = level_after;
            *o = ok;
        }
        self.bucket.level = u128::from(level);
    }

    /// `(cap, unit)` in u64 when the bucket is below 2**63 units (then every level, refill
    /// step below the capacity and cost up to `max_cost` fits a u64).
    #[inline]
    fn small(&self) -> Option<(u64, u64)> {
        let cap = u64::try_from(self.bucket.cap)
            .ok()
            .filter(|&c| c < 1 << 63)?;
        Some((cap, u64::try_from(self.unit).ok()?))
    }

    /// The level at `now` as an exact ratio of tokens.
    pub fn tokens_exact(&mut self, now: Nanos) -> Ratio {
        self.advance(now);
        // unit > 0, so this never fails.
        Ratio::new(self.bucket.level(), self.unit).unwrap_or(Ratio::ZERO)
    }

    /// The level at `now` in tokens, as the nearest float (within 2 ulp).
    #[allow(clippy::cast_precision_loss)]
    pub fn tokens(&mut self, now: Nanos) -> f64 {
        self.advance(now);
        self.bucket.level() as f64 / self.unit as f64
    }

    /// Nanoseconds from `now` until `n` tokens are there (0 if they are now; `u64::MAX` when
    /// the wait does not fit). A `now` before the latest time seen counts as that time, as in
    /// [`try_consume`](Self::try_consume), but the wait is still measured from `now`.
    pub fn time_until(&mut self, n: u64, now: Nanos) -> Result<Nanos, ParamError> {
        self.check_cost(n)?;
        self.advance(now);
        let wait = self.bucket.wait_ns(u128::from(n) * self.unit);
        // advance() left last >= now.
        Ok(match wait {
            0 | u64::MAX => wait,
            w => w.saturating_add(self.last - now),
        })
    }
}

/// The u64 GCRA loop runs only while the TAT is below this (2**63 + 2**62).
const GCRA_TAT_MAX: u64 = (1 << 63) + (1 << 62);

/// The generic cell rate algorithm, virtual-scheduling form (ITU-T I.371): emission interval
/// `T` ns, tolerance `tau` ns. Cost `n` conforms at `t` iff `t >= TAT + (n - 1) T - tau`; then
/// `TAT = max(TAT, t) + n T`. A fresh limiter admits `1 + floor(tau / T)` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gcra {
    interval: Nanos,
    tolerance: Nanos,
    max_cost: u64,
    /// Theoretical arrival time, ns (u128: TAT may run past u64 under a long backlog).
    tat: u128,
    last: Nanos,
}

impl Gcra {
    /// `interval` > 0 ns between conforming unit cells; `tolerance` >= 0 ns.
    pub fn new(interval: Nanos, tolerance: Nanos) -> Result<Gcra, ParamError> {
        if interval == 0 {
            return Err(ParamError(
                "interval must be > 0 seconds (at least 1 ns), got 0".into(),
            ));
        }
        Ok(Gcra {
            interval,
            tolerance,
            max_cost: 1 + tolerance / interval,
            tat: 0,
            last: 0,
        })
    }

    pub fn interval(&self) -> Nanos {
        self.interval
    }

    pub fn tolerance(&self) -> Nanos {
        self.tolerance
    }

    /// The largest cost that can ever conform: `1 + floor(tau / T)`.
    pub fn max_cost(&self) -> u64 {
        self.max_cost
    }

    /// The theoretical arrival time in ns.
    pub fn tat(&self) -> u128 {
        self.tat
    }

    #[inline]
    pub fn check_cost(&self, n: u64) -> Result<(), ParamError> {
        if n > self.max_cost {
            Err(never(n, self.max_cost))
        } else {
            Ok(())
        }
    }

    /// The earliest time (ns) at which cost `n >= 1` conforms: `TAT + (n - 1) T - tau`.
    #[inline]
    fn earliest(&self, n: u64) -> u128 {
        (self.tat + u128::from(n - 1) * u128::from(self.interval))
            .saturating_sub(u128::from(self.tolerance))
    }

    /// Whether cost `n` conforms at `now`; if so the TAT moves on by `n T`.
    #[inline]
    pub fn try_consume(&mut self, n: u64, now: Nanos) -> Result<bool, ParamError> {
        self.check_cost(n)?;
        Ok(self.consume(n, now))
    }

    #[inline]
    fn consume(&mut self, n: u64, now: Nanos) -> bool {
        let t = u128::from(self.last.max(now));
        self.last = self.last.max(now);
        if n == 0 {
            return true;
        }
        if t < self.earliest(n) {
            return false;
        }
        self.tat = self.tat.max(t) + u128::from(n) * u128::from(self.interval);
        true
    }

    /// [`try_consume`](Self::try_consume) for each `(cost, now)`; a cost above
    /// [`max_cost`](Self::max_cost) is answered `false`.
    pub fn try_consume_each(
        &mut self,
        items: impl IntoIterator<Item = (u64, Nanos)>,
        out: &mut [bool],
    ) {
        for ((n, now), o) in items.into_iter().zip(out.iter_mut()) {
            *o = n <= self.max_cost && self.consume(n, now);
        }
    }

    /// [`try_consume_each`](Self::try_consume_each) over columns: `costs[i]` at `times[i]`
    /// (rows past the shortest slice are left alone). The same answers and the same final
    /// state; in u64 arithmetic when the times, the TAT and `T + tau` are small enough (always,
    /// for times below 2**63 ns and `T + tau` below 2**62 ns).
    pub fn try_consume_rows<C: CostRow>(&mut self, costs: &[C], times: &[Nanos], out: &mut [bool]) {
        let n = out.len().min(costs.len()).min(times.len());
        let (costs, times, out) = (&costs[..n], &times[..n], &mut out[..n]);
        let small = u64::try_from(self.tat)
            .ok()
            .filter(|&tat| tat < GCRA_TAT_MAX && self.interval + self.tolerance < 1 << 62);
        // A branch-free pass (it vectorizes): every time below 2**63.
        let Some(mut tat) = small.filter(|_| times.iter().fold(0, |a, &t| a | t) < 1 << 63) else {
            let rows = costs.iter().map(CostRow::cost).zip(times.iter().copied());
            self.try_consume_each(rows, out);
            return;
        };
        let (interval, max_cost) = (self.interval, self.max_cost);
        let slack = self.interval + self.tolerance;
        let mut last = self.last;
        for ((c, &now), o) in costs.iter().zip(times).zip(out.iter_mut()) {
            let n = c.cost();
            let valid = n <= max_cost;
            // A cost above max_cost is refused before the clock is read (as in
            // `try_consume_each`), so it does not move `last`: its time counts as `last`.
            let t = last.max(if valid { now } else { 0 });
            last = t;
            // Cost n >= 1 conforms iff t >= (TAT + (n - 1) T).saturating_sub(tau), that is iff
            // t + T + tau >= TAT + n T. With n T <= T + tau < 2**62, t < 2**63 and
            // TAT < 2**63 + 2**62 (kept: a conforming row leaves TAT <= t + T + tau), no sum
            // overflows. Cost 0 always conforms and leaves the TAT alone (nt = 0 below, and
            // max(TAT, t) is taken only when the cost is not 0).
            let nt = if valid { n * interval } else { 0 };
            let fits = t + slack >= tat + nt;
            *o = valid & ((n == 0) | fits);
            // TAT <- max(TAT, t) + n T when taken. A plain branch: with mostly-conforming
            // rows it predicts well and beats a masked update (measured side by side).
            if valid & (n != 0) & fits {
                tat = tat.max(t) + nt;
            }
        }
        self.tat = u128::from(tat);
        self.last = last;
    }

    /// Nanoseconds from `now` until cost `n` conforms (0 if it does now; `u64::MAX` when the
    /// wait does not fit). A `now` before the latest time seen counts as that time, as in
    /// [`try_consume`](Self::try_consume), but the wait is still measured from `now`.
    pub fn time_until(&mut self, n: u64, now: Nanos) -> Result<Nanos, ParamError> {
        self.check_cost(n)?;
        self.last = self.last.max(now);
        if n == 0 {
            return Ok(0);
        }
        let earliest = self.earliest(n);
        if earliest <= u128::from(self.last) {
            return Ok(0);
        }
        Ok(u64::try_from(earliest - u128::from(now)).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    fn r(n: u128, d: u128) -> Ratio {
        Ratio::new(n, d).unwrap()
    }

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn starts_full_and_refills_exactly() {
        let mut tb = TokenBucket::new(r(1, 3), r(2, 1)).unwrap();
        assert_eq!(tb.try_consume(2, 0), Ok(true));
        assert_eq!(tb.try_consume(1, 0), Ok(false));
        // 1/3 token/s: one token after exactly 3 s, not a ns before.
        assert_eq!(tb.time_until(1, 0), Ok(3 * S));
        assert_eq!(tb.try_consume(1, 3 * S - 1), Ok(false));
        assert_eq!(tb.try_consume(1, 3 * S), Ok(true));
        assert_eq!(tb.tokens_exact(3 * S), Ratio::ZERO);
        assert_eq!(tb.tokens_exact(4 * S), r(1, 3));
        assert_eq!(tb.tokens_exact(1000 * S), r(2, 1));
        assert!(tb.try_consume(3, 0).is_err());
        assert_eq!(tb.try_consume(0, 0), Ok(true));
    }

    #[test]
    fn refuses_bad_parameters() {
        assert!(TokenBucket::new(Ratio::ZERO, r(1, 1)).is_err());
        assert!(TokenBucket::new(r(1, 1), Ratio::ZERO).is_err());
        let e = TokenBucket::new(r(1, 1), r(1, 2))
            .unwrap()
            .try_consume(1, 0);
        assert!(e.unwrap_err().0.contains("never conform"));
        assert!(Gcra::new(0, 5).is_err());
        // A capacity past 2**126 units.
        assert!(TokenBucket::new(r(1, 1), r(1 << 120, 1)).is_err());
    }

    #[test]
    fn time_going_backwards_is_no_time() {
        let mut tb = TokenBucket::new(r(1, 1), r(1, 1)).unwrap();
        assert_eq!(tb.try_consume(1, 10 * S), Ok(true));
        assert_eq!(tb.try_consume(1, 5 * S), Ok(false));
        assert_eq!(tb.try_consume(1, 10 * S + S - 1), Ok(false));
        assert_eq!(tb.try_consume(1, 11 * S), Ok(true));
        let mut g = Gcra::new(S, 0).unwrap();
        assert_eq!(g.try_consume(1, 10 * S), Ok(true));
        assert_eq!(g.try_consume(1, 0), Ok(false));
        assert_eq!(g.try_consume(1, 11 * S), Ok(true));
    }

    /// P6 (d): saturated for 1e6 simulated seconds, exactly b + floor(r t), near 2**62 ns too.
    #[test]
    fn saturation_admits_exactly_burst_plus_rate_times_time() {
        for start in [0, 1 << 62] {
            let rate = r(7, 3); // 2.333... tokens/s
            let mut tb = TokenBucket::new(rate, r(5, 1)).unwrap();
            let horizon = 1_000_000 * S;
            let mut admitted: u128 = 0;
            // Ask at every token boundary and in between, in steps of 0.1 s.
            let step = S / 10;
            let mut t = 0;
            // The first reading refills from time 0 to `start`: the bucket is full anyway.
            while t <= horizon {
                while tb.try_consume(1, start + t).unwrap() {
                    admitted += 1;
                }
                t += step;
            }
            assert_eq!(
                admitted,
                5 + rate.mul_floor(u128::from(horizon / S)).unwrap()
            );
        }
    }

    /// P6 (a), (b), (c) on random arrivals: every window within b + r (t - s), rejection only
    /// when short of tokens, and the GCRA equivalence.
    #[test]
    fn random_arrivals_match_the_model_and_the_gcra() {
        let mut rng = Rng::new(7);
        for case in 0..200 {
            let interval = 1 + rng.next_u64() % 3_000_000; // T in ns
            let tolerance = rng.next_u64() % 10_000_000;
            let base = if case % 2 == 0 {
                0
            } else {
                (1 << 62) + rng.next_u64() % S
            };
            let mut g = Gcra::new(interval, tolerance).unwrap();
            // TB(1/T per ns, 1 + tau/T): rate = 1e9/T tokens/s.
            let rate = r(u128::from(S), u128::from(interval));
            let burst = r(u128::from(interval + tolerance), u128::from(interval));
            let mut tb = TokenBucket::new(rate, burst).unwrap();
            assert_eq!(tb.max_cost(), g.max_cost());
            let mut t = base;
            let mut log: Vec<(Nanos, u64)> = Vec::new();
            for _ in 0..300 {
                t += rng.next_u64() % (2 * interval);
                let n = rng.next_u64() % (g.max_cost() + 1);
                let before = tb.tokens_exact(t);
                let a = tb.try_consume(n, t).unwrap();
                assert_eq!(a, g.try_consume(n, t).unwrap(), "case {case}");
                // (b): refused only when the bucket held fewer than n tokens.
                assert_eq!(a, before.num() >= u128::from(n) * before.den());
                if a {
                    log.push((t, n));
                }
            }
            // (a): A(s, t] <= b + r (t - s) over every window of admitted arrivals (inclusive
            // of the start, which is the stronger form).
            for i in 0..log.len() {
                let mut sum: u128 = 0;
                for &(tj, nj) in &log[i..] {
                    sum += u128::from(nj);
                    let dt = u128::from(tj - log[i].0);
                    // sum <= (T + tau)/T + dt/T  <=>  sum T <= T + tau + dt
                    assert!(sum * u128::from(interval) <= u128::from(interval + tolerance) + dt);
                }
            }
        }
    }

    #[test]
    fn burst_above_capacity_admits_capacity() {
        // P6 (e): n > b arrivals at t = 0 admit b; (f) a cost > b is refused as never.
        let mut tb = TokenBucket::new(r(10, 1), r(9, 2)).unwrap();
        let admitted = (0..20).filter(|_| tb.try_consume(1, 0).unwrap()).count();
        assert_eq!(admitted, 4);
        assert!(tb.try_consume(5, 0).is_err());
        let mut out = [true; 3];
        tb.try_consume_each([(5, S), (4, S), (1, S)], &mut out);
        assert_eq!(out, [false, true, false]);
    }

    /// A bucket of random rate and burst; `large`: a burst past 2**63 units (the u128 loop).
    fn random_bucket(rng: &mut Rng, large: bool) -> TokenBucket {
        let rate = r(
            1 + u128::from(rng.next_u64() % 10_000),
            1 + u128::from(rng.next_u64() % 7),
        );
        let burst = if large {
            r(1 << 70, 3)
        } else {
            r(
                1 + u128::from(rng.next_u64() % 50),
                1 + u128::from(rng.next_u64() % 4),
            )
        };
        TokenBucket::new(rate, burst).unwrap()
    }

    /// The batch loop (u64 for small buckets, u128 for large ones) answers as single calls do.
    #[test]
    fn batch_equals_single_calls() {
        let mut rng = Rng::new(9);
        for case in 0..100 {
            let mut a = random_bucket(&mut rng, case % 3 == 0);
            let mut b = a.clone();
            let mut t = (case % 2) * (1 << 62);
            let rows: Vec<(u64, Nanos)> = (0..300)
                .map(|_| {
                    t += rng.next_u64() % (S / 100);
                    (rng.next_u64() % (b.max_cost().min(60) + 1), t)
                })
                .collect();
            let mut out = vec![false; rows.len()];
            a.try_consume_each(rows.iter().copied(), &mut out);
            for (&(n, t), &o) in rows.iter().zip(&out) {
                assert_eq!(o, b.try_consume(n, t).unwrap(), "case {case}");
            }
            assert_eq!(a, b);
        }
    }

    /// Random rows for the column forms: costs up to a little past `max_cost` (some refused),
    /// times mostly rising with some going backwards, from `base`.
    fn rows(rng: &mut Rng, len: usize, max_cost: u64, base: Nanos, step: u64) -> Vec<(u64, Nanos)> {
        let mut t = base;
        (0..len)
            .map(|_| {
                let back = rng.next_u64() % 10 == 0;
                t = if back {
                    t.saturating_sub(rng.next_u64() % (step + 1))
                } else {
                    t.saturating_add(rng.next_u64() % (step + 1))
                };
                (rng.next_u64() % (max_cost.min(60) + 3), t)
            })
            .collect()
    }

    /// The column forms answer as `try_consume_each` does and leave the same state: small and
    /// large buckets, refused costs, time going backwards, one time for all rows.
    #[test]
    fn bucket_columns_equal_each() {
        let mut rng = Rng::new(11);
        for case in 0..300 {
            let mut a = random_bucket(&mut rng, case % 5 == 0);
            let base = [0, 1 << 62, u64::MAX - S][case % 3];
            // A first call so that the buckets do not start full.
            a.try_consume_each(
                rows(&mut rng, 20, a.max_cost(), base, S / 100),
                &mut [false; 20],
            );
            let len = [0, 1, 7, 300][case % 4];
            let rows = rows(&mut rng, len, a.max_cost(), base, S / 100);
            let (costs, times): (Vec<u64>, Vec<Nanos>) = rows.iter().copied().unzip();
            let mut b = a.clone();
            let (mut want, mut got) = (vec![false; len], vec![true; len]);
            a.try_consume_each(rows.iter().copied(), &mut want);
            b.try_consume_rows(&costs, &times, &mut got);
            assert_eq!(want, got, "case {case}");
            assert_eq!(a, b, "case {case}");
            let now = times.last().copied().unwrap_or(base);
            a.try_consume_each(costs.iter().map(|&c| (c, now)), &mut want);
            b.try_consume_all_at(&costs, now, &mut got);
            assert_eq!(want, got, "case {case}");
            assert_eq!(a, b, "case {case}");
        }
    }

    /// Long columns of rising times (the four-lane and the block loops): the same answers and
    /// state as `try_consume_each`, with gaps past the time to fill and past 2**32 ns, equal
    /// times, rows that go back or costs above the burst (negative int64 ones too) here and
    /// there, and buckets with and without a fractional unit.
    #[test]
    fn bucket_blocks_equal_each() {
        let mut rng = Rng::new(13);
        for case in 0..400 {
            let mut a = random_bucket(&mut rng, case % 7 == 0);
            if case % 3 == 0 {
                a = TokenBucket::new(r(1_000_000_000, 1), r(1_000_000, 1)).unwrap();
            }
            let len = [0, 1, 3, 4, 5, 9, 255, 256, 257, 700, 1500][case % 11];
            let fill = a.bucket.fill_ns.min(S);
            let mut t = [0, 1 << 40, 1 << 62][case % 3];
            let mut rows: Vec<(i64, Nanos)> = (0..len)
                .map(|_| {
                    t += match rng.next_u64() % 50 {
                        0 => 0,
                        1 => fill + rng.next_u64() % 1000,
                        2 if case % 5 == 0 => (1 << 32) + rng.next_u64() % 3,
                        _ => rng.next_u64() % (fill / 4 + 2),
                    };
                    #[allow(clippy::cast_possible_wrap)] // small
                    let c = (rng.next_u64() % (a.max_cost().min(60) + 1)) as i64;
                    (c, t)
                })
                .collect();
            for _ in 0..[0, 1, 5][case % 3] {
                if len > 1 {
                    let i = 1 + (rng.next_u64() as usize) % (len - 1);
                    let back = 1 + rng.next_u64() % (fill / 2 + 1);
                    rows[i].1 = rows[i - 1].1.saturating_sub(back);
                }
            }
            for _ in 0..[0, 0, 1, 4][case % 4] {
                if len > 0 {
                    let i = (rng.next_u64() as usize) % len;
                    let bad = i64::try_from(a.max_cost().saturating_add(1)).unwrap_or(i64::MAX);
                    rows[i].0 = if rng.next_u64() % 2 == 0 { bad } else { -7 };
                }
            }
            let (costs, times): (Vec<i64>, Vec<Nanos>) = rows.iter().copied().unzip();
            let ucosts: Vec<u64> = costs.iter().map(|&c| c.cost()).collect();
            let mut b = a.clone();
            let mut c = a.clone();
            let mut d = a.clone();
            let mut want = vec![false; len];
            a.try_consume_each(ucosts.iter().copied().zip(times.iter().copied()), &mut want);
            let mut got = vec![true; len];
            b.try_consume_rows(&costs, &times, &mut got);
            assert_eq!(want, got, "case {case}");
            assert_eq!(a, b, "case {case}");
            let mut got = vec![true; len];
            c.try_consume_rows(&ucosts, &times, &mut got);
            assert_eq!(want, got, "case {case}");
            assert_eq!(a, c, "case {case}");
            if let Some((cap, unit)) = d.small().filter(|&(cap, _)| cap < 1 << 62) {
                let per_ns = u64::try_from(d.bucket.per_ns).unwrap();
                let mut got = vec![true; len];
                d.rows_in_blocks(&costs, &times, &mut got, (cap, unit, per_ns));
                assert_eq!(want, got, "case {case}");
                assert_eq!(a, d, "case {case}");
            }
        }
    }

    /// A cost far past the burst in a lane after conforming ones is refused: its units (near
    /// 2**63 with a unit of 2**31) must not wrap the lanes' sums.
    #[test]
    fn lanes_refuse_costs_past_the_burst() {
        // 1953125 tokens/s is 2**22 units a ns with 2**31 units a token.
        let a = TokenBucket::new(r(1_953_125, 1), r((10 << 31) + 1, 1 << 31)).unwrap();
        assert_eq!((a.unit(), a.max_cost()), (1 << 31, 10));
        let costs: Vec<u64> = [1, 1, 1, (1 << 32) - 1].repeat(4);
        let times: Vec<Nanos> = (0..16).map(|i| 1000 + i).collect();
        let got = columns_as_each(&a, &costs, &times);
        assert!(!got[3] && got[4]);
    }

    /// `try_consume_rows` on a copy of `a` against `try_consume_each` on another: the same
    /// answers (returned) and the same state after.
    fn columns_as_each(a: &TokenBucket, costs: &[u64], times: &[Nanos]) -> Vec<bool> {
        let (mut b, mut c) = (a.clone(), a.clone());
        let (mut want, mut got) = (vec![false; costs.len()], vec![true; costs.len()]);
        b.try_consume_each(costs.iter().copied().zip(times.iter().copied()), &mut want);
        c.try_consume_rows(costs, times, &mut got);
        assert_eq!(want, got);
        assert_eq!(b, c);
        got
    }

    /// Takes that empty the bucket exactly conform and one unit more does not, in the lanes
    /// as one at a time (1e9 tokens/s: a unit of 1 token, 1 a ns).
    #[test]
    fn lanes_take_to_exactly_empty() {
        let a = TokenBucket::new(r(1_000_000_000, 1), r(10, 1)).unwrap();
        // At t = 5 (full): 6 then 5 of the 4 left (refused), 4 (exactly empty), then one a
        // nanosecond as it refills, then 2 after 1 ns (refused).
        let got = columns_as_each(
            &a,
            &[6, 5, 4, 1, 1, 2, 1, 10, 0],
            &[5, 5, 5, 6, 7, 8, 8, 18, 18],
        );
        assert_eq!(
            got,
            [true, false, true, true, true, false, true, true, true]
        );
        // Emptied at t = 5, then 5 tokens wanted each ns while refusing: refused with 4 left
        // at t = 9, taken with exactly 5 at t = 10.
        let got = columns_as_each(
            &a,
            &[10, 5, 5, 5, 5, 5, 5, 1, 1, 1],
            &[5, 5, 6, 7, 8, 9, 10, 10, 11, 11],
        );
        let mut expect = [false; 10];
        (expect[0], expect[6], expect[8]) = (true, true, true);
        assert_eq!(got, expect);
    }

    /// Whole blocks whose costs add up to the level: the block is taken at once exactly when
    /// the sum is at most the level and nothing in it is odd (a time going back or 2**32 ns on,
    /// a cost past the burst or negative); either way the answers and the state are those of
    /// one row at a time.
    #[test]
    fn whole_blocks_fit_the_level() {
        use super::super::lanes::{take_all, Run, ALL_ROWS};
        // 1e9 tokens/s, burst 1e6: a unit of 1 token, 1 a ns.
        let a0 = TokenBucket::new(r(1_000_000_000, 1), r(1_000_000, 1)).unwrap();
        let run = Run::new(1_000_000, 1, 1, 1_000_000).unwrap();
        let avx2 = std::is_x86_feature_detected!("avx2");
        let mut rng = Rng::new(21);
        for case in 0..600usize {
            // Drain the bucket to `level` at t = 1000.
            let mut a = a0.clone();
            let level = 1000 + rng.next_u64() % 999_000;
            let mut ok = [false];
            a.try_consume_each([(1_000_000 - level, 1000)], &mut ok);
            assert!(ok[0]);
            // A block whose costs add up to level - 2 ..= level + 2.
            let sum = level + u64::try_from(case % 5).unwrap() - 2;
            let mut costs: Vec<u64> = (0..ALL_ROWS).map(|_| rng.next_u64() % 1000).collect();
            let rest = costs[..ALL_ROWS - 1].iter().sum::<u64>();
            costs[ALL_ROWS - 1] = sum.saturating_sub(rest);
            let fits = costs.iter().sum::<u64>() <= level;
            let mut t = 1000;
            let mut times: Vec<Nanos> = (0..ALL_ROWS)
                .map(|_| {
                    t += [0, 1, rng.next_u64() % 5000][case % 3];
                    t
                })
                .collect();
            let at = (rng.next_u64() as usize) % ALL_ROWS;
            let odd = case / 5 % 6;
            match odd {
                1 if at > 0 => times[at] = times[at - 1] - 1,
                2 => {
                    for x in &mut times[at..] {
                        *x += 1 << 32;
                    }
                }
                3 => costs[at] = 1_000_001,
                4 => costs[at] = (-3i64).cost(),
                _ => {}
            }
            let plain = !matches!(odd, 1 if at > 0) && !matches!(odd, 2..=4);
            // A few rows after the block, so the block is not the whole batch.
            costs.extend([5, 7, 9]);
            times.extend([t + 10, t + 20, t + 30]);
            if avx2 {
                let f = i64::try_from(1_000_000 - level).unwrap();
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX2; both slices hold more than ALL_ROWS rows.
                let got = unsafe { take_all(&costs, &times, 1000, f, &run) };
                assert_eq!(got.is_some(), plain && fits, "case {case}");
                if let Some(f) = got {
                    let mut b = a.clone();
                    let mut out = vec![false; ALL_ROWS];
                    b.try_consume_each(
                        costs[..ALL_ROWS]
                            .iter()
                            .copied()
                            .zip(times[..ALL_ROWS].iter().copied()),
                        &mut out,
                    );
                    assert!(out.iter().all(|&o| o), "case {case}");
                    let t_end = i64::try_from(times[ALL_ROWS - 1] - 1000).unwrap();
                    assert_eq!(
                        b.bucket.level,
                        u128::try_from(1_000_000 - (f - t_end)).unwrap()
                    );
                }
            }
            columns_as_each(&a, &costs, &times);
        }
    }

    /// The GCRA's column form answers as `try_consume_each` does and leaves the same state, in
    /// the u64 loop and in the fallback (times past 2**63, a huge tolerance).
    #[test]
    fn gcra_columns_equal_each() {
        let mut rng = Rng::new(12);
        for case in 0..300 {
            let interval = 1 + rng.next_u64() % 3_000_000;
            let tolerance = if case % 7 == 0 {
                1 << 62
            } else {
                rng.next_u64() % 10_000_000
            };
            let mut a = Gcra::new(interval, tolerance).unwrap();
            let base = [0, 1 << 62, (1 << 63) - S, u64::MAX - S][case % 4];
            let step = 2 * interval;
            a.try_consume_each(
                rows(&mut rng, 20, a.max_cost(), base, step),
                &mut [false; 20],
            );
            let len = [0, 1, 7, 300][case % 4];
            let rows = rows(&mut rng, len, a.max_cost(), base, step);
            let (costs, times): (Vec<u64>, Vec<Nanos>) = rows.iter().copied().unzip();
            let mut b = a.clone();
            let (mut want, mut got) = (vec![false; len], vec![true; len]);
            a.try_consume_each(rows.iter().copied(), &mut want);
            b.try_consume_rows(&costs, &times, &mut got);
            assert_eq!(want, got, "case {case}");
            assert_eq!(a, b, "case {case}");
        }
    }

    #[test]
    fn gcra_time_until_and_costs() {
        let mut g = Gcra::new(100, 250).unwrap(); // burst 1 + 2 = 3
        assert_eq!(g.max_cost(), 3);
        assert_eq!(g.try_consume(3, 1000), Ok(true)); // TAT = 1300
        assert_eq!(g.time_until(1, 1000), Ok(50)); // 1300 - 250
        assert_eq!(g.time_until(2, 1000), Ok(150));
        assert_eq!(g.try_consume(1, 1049), Ok(false));
        assert_eq!(g.try_consume(1, 1050), Ok(true));
        assert!(g.try_consume(4, 5000).is_err());
        assert_eq!(g.time_until(0, 0), Ok(0));
    }

    /// A `now` before the latest time seen counts as that time, but the wait is measured from
    /// `now`: trying again at `now + wait` succeeds.
    #[test]
    fn waits_from_a_time_before_the_latest_count_from_now() {
        let mut tb = TokenBucket::new(r(1, 1), r(1, 1)).unwrap();
        assert_eq!(tb.try_consume(1, 10 * S), Ok(true));
        assert_eq!(tb.time_until(1, 5 * S), Ok(6 * S));
        assert_eq!(tb.try_consume(1, 11 * S - 1), Ok(false));
        assert_eq!(tb.try_consume(1, 11 * S), Ok(true));
        // Tokens there now are there at any earlier time too.
        let mut tb = TokenBucket::new(r(1, 1), r(2, 1)).unwrap();
        assert_eq!(tb.try_consume(1, 10 * S), Ok(true));
        assert_eq!(tb.time_until(1, 5 * S), Ok(0));
        let mut g = Gcra::new(S, 0).unwrap();
        assert_eq!(g.try_consume(1, 10 * S), Ok(true));
        assert_eq!(g.time_until(1, 5 * S), Ok(6 * S));
        assert_eq!(g.try_consume(1, 11 * S - 1), Ok(false));
        assert_eq!(g.try_consume(1, 11 * S), Ok(true));
        let mut g = Gcra::new(S, S).unwrap();
        assert_eq!(g.try_consume(1, 10 * S), Ok(true));
        assert_eq!(g.time_until(1, 5 * S), Ok(0));
    }

    /// A wait past 2**64 ns is `u64::MAX`, never a shorter wait.
    #[test]
    fn waits_past_u64_are_max() {
        // 1e-9 token/s: 19 tokens take 1.9e19 ns.
        let mut tb = TokenBucket::new(r(1, 1_000_000_000), r(19, 1)).unwrap();
        assert_eq!(tb.try_consume(19, 0), Ok(true));
        assert_eq!(tb.time_until(19, 0), Ok(u64::MAX));
        // Measured from an earlier now, a wait that fits from the latest time may not.
        let mut tb = TokenBucket::new(r(1, 1), r(1, 1)).unwrap();
        assert_eq!(tb.try_consume(1, u64::MAX - S / 2), Ok(true));
        assert_eq!(tb.time_until(1, 0), Ok(u64::MAX));
    }
}
