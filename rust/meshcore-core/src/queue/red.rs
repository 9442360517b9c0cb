//! Random Early Detection (Floyd and Jacobson 1993) with gentle RED, Adaptive RED and ECN.
//!
//! [`RedQueue`] is a bounded FIFO whose arrivals pass the RED test of Floyd and Jacobson's
//! Fig. 2; [`RedConfig`] holds the parameters and checks them ([`RedConfig::validate`]).
//!
//! Per arrival at time `now`, with `q` the queue size before the arrival (packets, or bytes in
//! byte mode):
//! 1. Average: `avg <- (1 - w_q) avg + w_q q` when the queue is busy; when it is empty,
//!    `avg <- (1 - w_q)^m avg` with `m = (now - q_time) / packet_time`, `q_time` being the time
//!    the queue became empty (the idle correction replaces the EWMA step, as in Fig. 2).
//! 2. `avg < min_th`: enqueue, `count <- -1`.
//! 3. Probabilistic region (`min_th <= avg < max_th`, or `< 2 max_th` when gentle):
//!    `count <- count + 1`; `p_b = max_p (avg - min_th) / (max_th - min_th)` (gentle, above
//!    `max_th`: `max_p + (1 - max_p) (avg - max_th) / max_th`); the [`CountRule`] turns `p_b`
//!    and `count` into the marking probability `p_a`; a marked packet is dropped, or queued with
//!    CE when ECN is on and the packet is ECN-capable; `count <- 0` after a mark.
//! 4. Forced region (above): dropped (`count <- 0`), or CE-marked when ECN is on, the packet is
//!    ECN-capable and `harddrop` is off.
//! 5. A packet that RED lets in is still dropped when the queue would exceed `limit` (in byte
//!    mode: bytes, and also when it already holds `limit` packets, so that zero-byte packets
//!    cannot queue without bound).
//!
//! Adaptive RED (Floyd, Gummadi, Shenker 2001) adjusts `max_p` on a timer of period
//! `adapt_interval` started by the first call. Ticks are evaluated lazily at the next call, each
//! against the average as it stood at the tick (idle decay included), so the result equals that
//! of a real timer.
//!
//! Invariants: `len`/`backlog` count exactly the queued entries; `backlog <= limit` in byte
//! mode, `len <= limit` in both modes; `max_p` stays in [0.01, 0.5] when adaptive; time going
//! backwards counts as no time elapsed.

use super::{Nanos, ParamError, Verdict};
use crate::rand::Rng;
use std::collections::VecDeque;

/// How `count` (packets since the last mark) turns `p_b` into the marking probability `p_a`.
///
/// With `p_b` constant, the gap `X` between marks (packets, the marked one included) is:
/// - [`FloydJacobson`](CountRule::FloydJacobson): `p_a = p_b / (1 - count p_b)`, `X` uniform
///   on {1, ..., 1/p_b - 1}; realized rate `2 p_b`.
/// - [`Linux`](CountRule::Linux): one uniform `R` per cycle, mark when `count p_b >= R`
///   (`include/net/red.h`); `X` uniform on {1, ..., 1/p_b}; rate `2 p_b / (1 + p_b)`.
/// - [`Wait`](CountRule::Wait): ns-2/ns-3 `wait_` (ns-3's default): `p_a = 0` while
///   `count p_b < 1`, then `p_b / (2 - count p_b)`; `X` uniform on {ceil(1/p_b), ...,
///   2/p_b - 1}; rate about `2 p_b / 3`.
/// - [`Geometric`](CountRule::Geometric): `p_a = p_b`; `X` geometric; rate `p_b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountRule {
    FloydJacobson,
    Linux,
    Wait,
    Geometric,
}

impl CountRule {
    /// The rule named `fj`, `linux`, `wait` or `geometric`.
    pub fn parse(name: &str) -> Result<CountRule, ParamError> {
        match name {
            "fj" => Ok(CountRule::FloydJacobson),
            "linux" => Ok(CountRule::Linux),
            "wait" => Ok(CountRule::Wait),
            "geometric" => Ok(CountRule::Geometric),
            _ => Err(ParamError(format!(
                "count_rule must be one of 'fj', 'linux', 'wait', 'geometric', got {name:?}"
            ))),
        }
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn name(self) -> &'static str {
        match self {
            CountRule::FloydJacobson => "fj",
            CountRule::Linux => "linux",
            CountRule::Wait => "wait",
            CountRule::Geometric => "geometric",
        }
    }
}

/// Adaptive RED keeps `max_p` in [`MAX_P_MIN`, `MAX_P_MAX`].
pub const MAX_P_MIN: f64 = 0.01;
/// See [`MAX_P_MIN`].
pub const MAX_P_MAX: f64 = 0.5;
/// The default `limit` is this multiple of `max_th` (rounded up), so that gentle RED's region up
/// to `2 max_th` is reachable with room to spare.
pub const LIMIT_PER_MAX_TH: f64 = 4.0;
/// The largest `limit`: every queue size up to it is exact as an f64.
pub const MAX_LIMIT: u64 = 1 << 53;
/// 53 increases take max_p from 0.01 to 0.5 and 38 decreases take it back, so more Adaptive RED
/// steps in one direction change nothing: lazily evaluated runs of ticks are capped at this.
const TICK_CAP: u64 = 64;

/// RED parameters. Thresholds and `limit` are packets, or bytes when `bytes_mode`.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // independent switches, one per keyword argument
pub struct RedConfig {
    pub min_th: f64,
    pub max_th: f64,
    pub max_p: f64,
    pub w_q: f64,
    /// Queue capacity; `None` is `ceil(4 max_th)` ([`LIMIT_PER_MAX_TH`]).
    pub limit: Option<u64>,
    pub gentle: bool,
    pub ecn: bool,
    pub adaptive: bool,
    pub count_rule: CountRule,
    pub bytes_mode: bool,
    /// Transmission time of a typical packet (`s` in the idle correction), ns.
    pub packet_time: Nanos,
    /// In the forced region, drop ECN-capable packets too (only matters with `ecn`).
    pub harddrop: bool,
    /// Adaptive RED's period, ns.
    pub adapt_interval: Nanos,
    pub seed: u64,
}

impl Default for RedConfig {
    /// The paper's defaults: min_th 5, max_th 15 packets, max_p 1/50, w_q 0.002; a typical
    /// packet takes 1.2 ms (1500 bytes at 10 Mbit/s); Adaptive RED every 0.5 s.
    fn default() -> Self {
        RedConfig {
            min_th: 5.0,
            max_th: 15.0,
            max_p: 0.02,
            w_q: 0.002,
            limit: None,
            gentle: false,
            ecn: false,
            adaptive: false,
            count_rule: CountRule::FloydJacobson,
            bytes_mode: false,
            packet_time: 1_200_000,
            harddrop: true,
            adapt_interval: 500_000_000,
            seed: 0,
        }
    }
}

fn finite_nonneg(x: f64, what: &str) -> Result<(), ParamError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(ParamError(format!(
            "{what} must be a finite number >= 0, got {x}"
        )))
    }
}

impl RedConfig {
    /// Check the parameters; the resolved queue limit on success.
    pub fn validate(&self) -> Result<u64, ParamError> {
        finite_nonneg(self.min_th, "min_th")?;
        finite_nonneg(self.max_th, "max_th")?;
        if self.min_th >= self.max_th {
            return Err(ParamError(format!(
                "min_th must be below max_th, got min_th={} and max_th={}",
                self.min_th, self.max_th
            )));
        }
        if !(self.max_p > 0.0 && self.max_p <= 1.0) {
            return Err(ParamError(format!(
                "max_p must be in (0, 1], got {}",
                self.max_p
            )));
        }
        if !(self.w_q > 0.0 && self.w_q <= 1.0) {
            return Err(ParamError(format!(
                "w_q must be in (0, 1], got {}",
                self.w_q
            )));
        }
        if self.adaptive && !(MAX_P_MIN..=MAX_P_MAX).contains(&self.max_p) {
            return Err(ParamError(format!(
                "max_p must be in [0.01, 0.5] with adaptive=True (Adaptive RED keeps it there), got {}",
                self.max_p
            )));
        }
        if self.packet_time == 0 {
            return Err(ParamError("packet_time must be > 0 seconds".into()));
        }
        if self.adapt_interval == 0 {
            return Err(ParamError("adapt_interval must be > 0 seconds".into()));
        }
        let limit = if let Some(l) = self.limit {
            l
        } else {
            let l = (self.max_th * LIMIT_PER_MAX_TH).ceil();
            if l > 9.0e15 {
                return Err(ParamError(format!(
                    "max_th = {} is too large for the default limit; give limit",
                    self.max_th
                )));
            }
            // In range: checked just above, and max_th > 0.
            #[allow(clippy::cast_sign_loss)]
            let l = l as u64;
            l
        };
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ParamError(format!(
                "limit must be in 1..=2**53, got {limit}"
            )));
        }
        #[allow(clippy::cast_precision_loss)] // limit <= 2**53, exact
        if (limit as f64) < self.max_th {
            return Err(ParamError(format!(
                "limit must be >= max_th (or the average can never reach max_th), got limit={limit} and max_th={}",
                self.max_th
            )));
        }
        Ok(limit)
    }
}

/// What RED decided for one arrival, before the queue limit is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Pass,
    EarlyMark,
    EarlyDrop,
    ForcedMark,
    ForcedDrop,
}

/// Event counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedStats {
    /// Packets queued (marked ones included).
    pub enqueued: u64,
    pub dequeued: u64,
    /// Random drops in the probabilistic region.
    pub early_drops: u64,
    /// Drops in the forced region.
    pub forced_drops: u64,
    /// Packets RED let in that the queue limit refused.
    pub overlimit_drops: u64,
    /// CE marks in the probabilistic region.
    pub early_marks: u64,
    /// CE marks in the forced region (`ecn` on, `harddrop` off).
    pub forced_marks: u64,
}

/// The RED state machine: average, count, Adaptive RED timer, PRNG.
#[derive(Debug, Clone)]
struct Red {
    cfg: RedConfig,
    /// ln(1 - w_q): the idle decay is exp(m ln(1 - w_q)) (-inf when w_q = 1).
    ln_keep: f64,
    avg: f64,
    count: i64,
    /// Start of the current idle period (None until the queue first empties).
    q_time: Option<Nanos>,
    /// The latest time seen (earlier times are read as this one).
    last: Nanos,
    max_p: f64,
    /// max_p / (max_th - min_th).
    slope: f64,
    /// The Linux rule's uniform draw for the current cycle.
    r: f64,
    next_tick: Option<Nanos>,
    rng: Rng,
}

impl Red {
    fn new(cfg: RedConfig) -> Red {
        let mut rng = Rng::new(cfg.seed);
        let r = rng.unit();
        let mut red = Red {
            ln_keep: (-cfg.w_q).ln_1p(),
            avg: 0.0,
            count: -1,
            q_time: None,
            last: 0,
            max_p: cfg.max_p,
            slope: 0.0,
            r,
            next_tick: None,
            rng,
            cfg,
        };
        red.set_max_p(red.max_p);
        red
    }

    fn set_max_p(&mut self, p: f64) {
        self.max_p = p;
        self.slope = p / (self.cfg.max_th - self.cfg.min_th);
    }

    /// The time to use for a call at `now` (never before the latest one seen).
    #[inline]
    fn clock(&mut self, now: Nanos) -> Nanos {
        self.last = self.last.max(now);
        self.last
    }

    /// `avg` after the queue has been empty from `from` to `to`.
    fn decayed(&self, avg: f64, from: Nanos, to: Nanos) -> f64 {
        if to <= from || avg == 0.0 {
            return avg;
        }
        #[allow(clippy::cast_precision_loss)] // a ratio of times; 53 bits are plenty
        let m = (to - from) as f64 / self.cfg.packet_time as f64;
        avg * (m * self.ln_keep).exp()
    }

    /// The static curve p_b(avg) for the current max_p (1.0 in the forced region).
    fn probability(&self, avg: f64) -> f64 {
        let c = &self.cfg;
        if avg < c.min_th {
            0.0
        } else if avg < c.max_th {
            (avg - c.min_th) * self.slope
        } else if c.gentle && avg < 2.0 * c.max_th {
            self.max_p + (1.0 - self.max_p) * (avg - c.max_th) / c.max_th
        } else {
            1.0
        }
    }

    /// Run the Adaptive RED ticks due at or before `now`, in a queue whose state has not changed
    /// since the previous call (`empty`: whether it holds nothing).
    fn run_ticks(&mut self, now: Nanos, empty: bool) {
        let period = self.cfg.adapt_interval;
        let Some(first) = self.next_tick else {
            self.next_tick = Some(now.saturating_add(period));
            return;
        };
        if now < first {
            return;
        }
        let n = (now - first) / period + 1;
        self.next_tick = Some(first.saturating_add(n.saturating_mul(period)));
        let delta = self.cfg.max_th - self.cfg.min_th;
        let (low, high) = (self.cfg.min_th + 0.4 * delta, self.cfg.min_th + 0.6 * delta);
        let (ups, downs) = if let Some(q_time) = self.q_time.filter(|_| empty) {
            // Idle: the average decays, so the ticks above the band come first, then those in
            // it, then those below. Find the two boundaries by bisection.
            let at = |j: u64| self.decayed(self.avg, q_time, first + j * period);
            let above = first_false(n, |j| at(j) > high);
            let not_below = first_false(n, |j| at(j) >= low);
            (above, n - not_below)
        } else if self.avg > high {
            (n, 0)
        } else if self.avg < low {
            (0, n)
        } else {
            (0, 0)
        };
        for _ in 0..ups.min(TICK_CAP) {
            if self.max_p <= MAX_P_MAX {
                let p = self.max_p + (0.01f64).min(self.max_p / 4.0);
                self.set_max_p(p.min(MAX_P_MAX));
            }
        }
        for _ in 0..downs.min(TICK_CAP) {
            if self.max_p >= MAX_P_MIN {
                self.set_max_p((self.max_p * 0.9).max(MAX_P_MIN));
            }
        }
    }

    /// The RED decision for an arrival at `now` to a queue of size `q` (`empty`: no packets).
    #[inline(always)]
    #[allow(clippy::inline_always)] // see `RedQueue::enqueue`
    fn arrive(&mut self, q: u64, empty: bool, ecn_capable: bool, now: Nanos) -> Decision {
        let now = self.clock(now);
        if self.cfg.adaptive {
            self.run_ticks(now, empty);
        }
        let c = &self.cfg;
        if empty {
            if let Some(q_time) = self.q_time {
                self.avg = self.decayed(self.avg, q_time, now);
            }
        } else {
            // q <= limit <= 2**53: exact through i64, whose conversion is one instruction (u64's
            // takes six on x86-64 without AVX-512).
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
            let q = q as i64 as f64;
            self.avg = (1.0 - c.w_q) * self.avg + c.w_q * q;
        }
        let avg = self.avg;
        if avg < c.min_th {
            self.count = -1;
            return Decision::Pass;
        }
        let mark_ecn = c.ecn && ecn_capable;
        let early = avg < c.max_th || (c.gentle && avg < 2.0 * c.max_th);
        if !early {
            if mark_ecn && !c.harddrop {
                self.count = if c.count_rule == CountRule::Linux {
                    -1
                } else {
                    0
                };
                return Decision::ForcedMark;
            }
            self.count = if c.count_rule == CountRule::Linux {
                -1
            } else {
                0
            };
            return Decision::ForcedDrop;
        }
        let p_b = if avg < c.max_th {
            (avg - c.min_th) * self.slope
        } else {
            self.max_p + (1.0 - self.max_p) * (avg - c.max_th) / c.max_th
        };
        self.count += 1;
        #[allow(clippy::cast_precision_loss)] // count stays far below 2**53
        let x = self.count as f64 * p_b;
        let mark = match c.count_rule {
            // p_a = p_b / (1 - x), written without the division: for x >= 1 (p_a >= 1) the
            // left side is <= 0 and the packet is always marked.
            CountRule::FloydJacobson => self.rng.unit() * (1.0 - x) < p_b,
            // 0 while x < 1, p_b / (2 - x) up to x < 2, then 1.
            CountRule::Wait => x >= 1.0 && self.rng.unit() * (2.0 - x) < p_b,
            CountRule::Geometric => self.rng.unit() < p_b,
            // The first packet of a cycle (count 0) draws R and is never marked.
            CountRule::Linux => {
                if self.count == 0 {
                    self.r = self.rng.unit();
                    false
                } else if x >= self.r {
                    self.r = self.rng.unit();
                    true
                } else {
                    false
                }
            }
        };
        if !mark {
            return Decision::Pass;
        }
        self.count = 0;
        if mark_ecn {
            Decision::EarlyMark
        } else {
            Decision::EarlyDrop
        }
    }
}

/// The first `j` in `0..n` where `pred(j)` is false (`n` if none), for `pred` true on a prefix.
fn first_false(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A queued packet.
#[derive(Debug, Clone)]
struct Entry<T> {
    item: T,
    size: u32,
}

/// A bounded FIFO of `T` with RED on arrival (see the module documentation).
#[derive(Debug, Clone)]
pub struct RedQueue<T> {
    red: Red,
    items: VecDeque<Entry<T>>,
    backlog: u64,
    limit: u64,
    stats: RedStats,
}

impl<T> RedQueue<T> {
    /// An empty queue; refuses bad parameters with a message naming the parameter.
    pub fn new(cfg: RedConfig) -> Result<RedQueue<T>, ParamError> {
        let limit = cfg.validate()?;
        Ok(RedQueue {
            red: Red::new(cfg),
            items: VecDeque::new(),
            backlog: 0,
            limit,
            stats: RedStats::default(),
        })
    }

    /// Offer `item` of `size` bytes at `now`: `Ok(Enqueued)` or `Ok(Marked)` (queued with CE),
    /// or `Err(item)` when it is dropped (early, forced or over the limit).
    // Inlined into batch loops, which then keep the RED state in registers: 34 instructions a
    // packet below min_th instead of 159 as a call (cachegrind, Python batch of 65536).
    #[inline(always)]
    #[allow(clippy::inline_always)]
    pub fn enqueue(
        &mut self,
        item: T,
        size: u32,
        ecn_capable: bool,
        now: Nanos,
    ) -> Result<Verdict, T> {
        let bytes = self.red.cfg.bytes_mode;
        let q = if bytes {
            self.backlog
        } else {
            self.items.len() as u64
        };
        let decision = self.red.arrive(q, self.items.is_empty(), ecn_capable, now);
        let s = &mut self.stats;
        let verdict = match decision {
            Decision::Pass => Verdict::Enqueued,
            Decision::EarlyMark | Decision::ForcedMark => Verdict::Marked,
            Decision::EarlyDrop => {
                s.early_drops += 1;
                return Err(item);
            }
            Decision::ForcedDrop => {
                s.forced_drops += 1;
                return Err(item);
            }
        };
        let need = if bytes { u64::from(size) } else { 1 };
        // In byte mode the limit caps the packets too (zero-byte packets would else queue
        // without bound); packets of a byte or more reach the byte limit first.
        if q + need > self.limit || (bytes && self.items.len() as u64 >= self.limit) {
            s.overlimit_drops += 1;
            return Err(item);
        }
        match decision {
            Decision::EarlyMark => s.early_marks += 1,
            Decision::ForcedMark => s.forced_marks += 1,
            _ => {}
        }
        s.enqueued += 1;
        self.backlog += u64::from(size);
        self.items.push_back(Entry { item, size });
        Ok(verdict)
    }

    /// Take the head packet at `now` (None when empty). Emptying the queue starts an idle period.
    pub fn dequeue(&mut self, now: Nanos) -> Option<T> {
        self.pop(now).map(|(item, _)| item)
    }

    /// [`dequeue`](Self::dequeue), with the packet's size.
    pub fn pop(&mut self, now: Nanos) -> Option<(T, u32)> {
        let now = self.red.clock(now);
        if self.red.cfg.adaptive {
            self.red.run_ticks(now, self.items.is_empty());
        }
        let e = self.items.pop_front()?;
        self.backlog -= u64::from(e.size);
        self.stats.dequeued += 1;
        if self.items.is_empty() {
            self.red.q_time = Some(now);
        }
        Some((e.item, e.size))
    }

    /// The average queue size (packets, or bytes in byte mode) as of the latest arrival.
    pub fn avg(&self) -> f64 {
        self.red.avg
    }

    /// The current max_p (changes only with Adaptive RED).
    pub fn max_p(&self) -> f64 {
        self.red.max_p
    }

    /// Packets since the last mark (-1 below min_th), as the count rule uses it.
    pub fn count(&self) -> i64 {
        self.red.count
    }

    /// The static marking probability p_b at average `avg` for the current max_p: 0 below
    /// min_th, linear to max_p at max_th, then (gentle) linear to 1 at 2 max_th; 1 beyond.
    pub fn probability(&self, avg: f64) -> f64 {
        self.red.probability(avg)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    /// The resolved capacity (packets, or bytes in byte mode).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn config(&self) -> &RedConfig {
        &self.red.cfg
    }

    pub fn stats(&self) -> RedStats {
        self.stats
    }

    /// The state to which [`rollback`](Self::rollback) returns the queue.
    pub fn checkpoint(&self) -> RedCheckpoint {
        RedCheckpoint {
            red: self.red.clone(),
            len: self.items.len(),
            backlog: self.backlog,
            stats: self.stats,
        }
    }

    /// Undo every arrival since `cp` was taken of this queue, with nothing dequeued since: the
    /// packets queued since are dropped (the latest ones, so `truncate`) and the RED state (the
    /// PRNG and Adaptive RED included), backlog and statistics are as they were. For batches
    /// that find a bad row only as they go, and must change nothing then.
    ///
    /// # Panics
    /// When the queue is shorter than at `cp` (something was dequeued).
    pub fn rollback(&mut self, cp: RedCheckpoint) {
        assert!(self.items.len() >= cp.len, "rollback after a dequeue");
        self.items.truncate(cp.len);
        self.red = cp.red;
        self.backlog = cp.backlog;
        self.stats = cp.stats;
    }
}

/// A [`RedQueue`]'s state for [`RedQueue::rollback`]: everything an arrival changes.
#[derive(Debug, Clone)]
pub struct RedCheckpoint {
    red: Red,
    len: usize,
    backlog: u64,
    stats: RedStats,
}

/// The Floyd-Jacobson test of `Red::arrive` at probability `p_b`, with `count` (an integer held
/// as an f64, exact far beyond any reachable count) incremented first: whether to mark.
#[inline(always)]
#[allow(clippy::inline_always)] // part of the fast loop's body
fn fj_mark(count: &mut f64, rng: &mut Rng, p_b: f64) -> bool {
    *count += 1.0;
    let x = *count * p_b;
    rng.unit() * (1.0 - x) < p_b
}

/// Rows per run of [`RedQueue::enqueue_sizes`]'s fast loop: the sizes it queues are gathered in
/// a stack buffer of this many (4 KiB) and pushed at the end of the run.
const RUN: usize = 1024;

/// Batches of at most this many rows gather into a buffer this long instead: zeroing the long
/// one would cost a router's batch of a few dozen packets more than its rows.
const SHORT_RUN: usize = 64;

impl<T: Default> RedQueue<T> {
    /// Offer a run of size-only packets (each item `T::default()`): row `i` is a packet of
    /// `sizes[i]` bytes arriving at `times[i]`, ECN-capable when `ecn` is given and `ecn[i]`.
    /// Each verdict's code (`Verdict as u8`, a refusal being `Dropped`) goes to `out[i]`.
    ///
    /// The result (verdicts, average, count, PRNG, queue, statistics) is exactly that of
    /// [`enqueue`](Self::enqueue) called row by row. The common configuration (the
    /// Floyd-Jacobson rule, not adaptive) runs a loop of its own ([`fj_run`](Self::fj_run));
    /// every other one goes through `enqueue`.
    ///
    /// # Panics
    /// When the columns differ in length.
    pub fn enqueue_sizes(
        &mut self,
        sizes: &[u32],
        times: &[Nanos],
        ecn: Option<&[bool]>,
        out: &mut [u8],
    ) {
        let n = out.len();
        assert!(sizes.len() == n && times.len() == n && ecn.is_none_or(|e| e.len() == n));
        let c = &self.red.cfg;
        if !c.adaptive && c.count_rule == CountRule::FloydJacobson {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("bmi1")
                && std::is_x86_feature_detected!("bmi2")
            {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX2, BMI1 and BMI2, the features `fj_runs_avx2` is
                // compiled for.
                return unsafe { self.fj_runs_avx2(sizes, times, ecn, out) };
            }
            self.fj_runs(sizes, times, ecn, out);
            return;
        }
        for (i, ((o, &size), &t)) in out.iter_mut().zip(sizes).zip(times).enumerate() {
            let ect = ecn.is_some_and(|e| e[i]);
            *o = match self.enqueue(T::default(), size, ect, t) {
                Ok(v) => v as u8,
                Err(_) => Verdict::Dropped as u8,
            };
        }
    }

    /// [`fj_runs`](Self::fj_runs) compiled with the three-operand (VEX) encodings and BMI's
    /// shifts and rotations: the same operations in fewer instructions (no register copies).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn fj_runs_avx2(
        &mut self,
        sizes: &[u32],
        times: &[Nanos],
        ecn: Option<&[bool]>,
        out: &mut [u8],
    ) {
        self.fj_runs(sizes, times, ecn, out);
    }

    /// The fast loop of [`enqueue_sizes`](Self::enqueue_sizes) (columns of equal length), in
    /// runs of [`RUN`] rows sharing one buffer for the sizes let in.
    #[inline(always)]
    #[allow(clippy::inline_always)] // the body of both copies above
    fn fj_runs(&mut self, sizes: &[u32], times: &[Nanos], ecn: Option<&[bool]>, out: &mut [u8]) {
        if out.len() <= SHORT_RUN {
            self.fj_runs_in(&mut [0; SHORT_RUN], sizes, times, ecn, out);
        } else {
            self.fj_runs_in(&mut [0; RUN], sizes, times, ecn, out);
        }
    }

    /// [`fj_runs`](Self::fj_runs) with `queued` as the buffer: runs of its length.
    #[inline(always)]
    #[allow(clippy::inline_always)] // see above
    fn fj_runs_in(
        &mut self,
        queued: &mut [u32],
        sizes: &[u32],
        times: &[Nanos],
        ecn: Option<&[bool]>,
        out: &mut [u8],
    ) {
        let bytes = self.red.cfg.bytes_mode;
        let run = queued.len();
        for (k, o) in out.chunks_mut(run).enumerate() {
            let rows = k * run..k * run + o.len();
            let (s, t) = (&sizes[rows.clone()], &times[rows.clone()]);
            let e = ecn.map(|e| &e[rows]);
            // Whether the limit can refuse none of the run's rows: it holds them all (in byte
            // mode their bytes too), so the loop need not test it.
            let room = self.items.len() + o.len() <= usize::try_from(self.limit).unwrap_or(0)
                && (!bytes
                    || self.backlog + s.iter().map(|&x| u64::from(x)).sum::<u64>() <= self.limit);
            match (bytes, room) {
                (true, true) => self.fj_run::<true, true>(s, t, e, o, queued),
                (true, false) => self.fj_run::<true, false>(s, t, e, o, queued),
                (false, true) => self.fj_run::<false, true>(s, t, e, o, queued),
                (false, false) => self.fj_run::<false, false>(s, t, e, o, queued),
            }
        }
    }

    /// [`enqueue_sizes`](Self::enqueue_sizes) of at most `queued.len()` rows for the
    /// Floyd-Jacobson rule without Adaptive RED (`BYTES`: byte mode; `ROOM`: the limit can
    /// refuse none of the rows). It is `Red::arrive` and `enqueue` with the configuration read
    /// once and the same arithmetic expression for expression, so the results are bit for bit
    /// the same, in a loop that keeps few values live:
    /// - the state (average, count, latest time, PRNG) is in locals, written back at the end;
    ///   the count and, in packet mode, the queue length are whole f64s (exact up to 2**53, and
    ///   the length is at most the limit, <= 2**53), which the arithmetic uses directly;
    /// - nothing is pushed in the loop: the sizes let in are written to `queued` and pushed
    ///   after it, in one go. Nothing reads the queue in between but its length and backlog,
    ///   which are counted;
    /// - nothing is dequeued within a run, so `q_time` is fixed; the ECN column is read only for
    ///   a packet about to be marked.
    #[inline(always)]
    #[allow(
        clippy::inline_always, // see above
        clippy::cast_precision_loss, // see above
        clippy::cast_possible_truncation,
        clippy::too_many_lines // one loop, kept whole so that it reads as `arrive` does
    )]
    fn fj_run<const BYTES: bool, const ROOM: bool>(
        &mut self,
        sizes: &[u32],
        times: &[Nanos],
        ecn: Option<&[bool]>,
        out: &mut [u8],
        queued: &mut [u32],
    ) {
        const PASS: u8 = Verdict::Enqueued as u8;
        const MARK: u8 = Verdict::Marked as u8;
        const DROP: u8 = Verdict::Dropped as u8;
        // What RED decided for a packet, before the limit: let in, or mark early / forced.
        const NONE: u8 = 0;
        const EARLY: u8 = 1;
        const FORCED: u8 = 2;
        let red = &self.red;
        let c = &red.cfg;
        let (min_th, max_th, w_q, gentle) = (c.min_th, c.max_th, c.w_q, c.gentle);
        // ECN marks in the probabilistic region, and in the forced one without harddrop.
        let (early_ecn, forced_ecn) = (c.ecn, c.ecn && !c.harddrop);
        let ect = |i: usize| ecn.is_some_and(|e| e[i]);
        let (keep, two_max) = (1.0 - w_q, 2.0 * max_th);
        let (slope, max_p, limit) = (red.slope, red.max_p, self.limit);
        let (mut avg, mut last) = (red.avg, red.last);
        let mut count = red.count as f64;
        let mut rng = red.rng.clone();
        let mut st = self.stats;
        // Packet mode: the length as an f64 (the queue size), and the limit.
        let mut len_f = self.items.len() as f64;
        let limit_f = limit as f64;
        // Byte mode: the length and the backlog.
        let mut len = self.items.len();
        let mut backlog = self.backlog;
        let n = out.len();
        let (sizes, times, queued) = (&sizes[..n], &times[..n], &mut queued[..n]);
        // Packets let in so far: their sizes are `queued[..k]`.
        let mut k = 0;
        // Row `$i`, at time `$last` when the queue is `$empty`: whether it is let in. A macro, so
        // that each of its two uses below is compiled with its own `$empty`.
        macro_rules! row {
            ($i:expr, $empty:expr, $last:expr) => {{
                let (i, empty, last): (usize, bool, Nanos) = ($i, $empty, $last);
                if empty {
                    if let Some(q_time) = red.q_time {
                        avg = red.decayed(avg, q_time, last);
                    }
                } else {
                    let q = if BYTES {
                        // As in `Red::arrive`: q <= limit <= 2**53.
                        #[allow(clippy::cast_possible_wrap)]
                        let q = backlog as i64 as f64;
                        q
                    } else {
                        len_f
                    };
                    avg = keep * avg + w_q * q;
                }
                let kind = if avg < min_th {
                    count = -1.0;
                    NONE
                } else if avg < max_th {
                    if fj_mark(&mut count, &mut rng, (avg - min_th) * slope) {
                        EARLY
                    } else {
                        NONE
                    }
                } else if gentle && avg < two_max {
                    let p_b = max_p + (1.0 - max_p) * (avg - max_th) / max_th;
                    if fj_mark(&mut count, &mut rng, p_b) {
                        EARLY
                    } else {
                        NONE
                    }
                } else {
                    FORCED
                };
                let size = sizes[i];
                let over = !ROOM
                    && if BYTES {
                        backlog + u64::from(size) > limit || len as u64 >= limit
                    } else {
                        len_f >= limit_f
                    };
                // The marked packets (few) apart, so that the common path stays short.
                let verdict = if kind != NONE {
                    count = 0.0;
                    let ecn_ok = if kind == EARLY { early_ecn } else { forced_ecn };
                    if !(ecn_ok && ect(i)) {
                        if kind == EARLY {
                            st.early_drops += 1;
                        } else {
                            st.forced_drops += 1;
                        }
                        DROP
                    } else if over {
                        st.overlimit_drops += 1;
                        DROP
                    } else {
                        if kind == EARLY {
                            st.early_marks += 1;
                        } else {
                            st.forced_marks += 1;
                        }
                        MARK
                    }
                } else if over {
                    st.overlimit_drops += 1;
                    DROP
                } else {
                    PASS
                };
                out[i] = verdict;
                if verdict == DROP {
                    false
                } else {
                    queued[k] = size;
                    k += 1;
                    if BYTES {
                        backlog += u64::from(size);
                        len += 1;
                    } else {
                        len_f += 1.0;
                    }
                    true
                }
            }};
        }
        // Nothing leaves within a run, so the queue is empty only before the first packet let
        // in. Those rows first; the others need not follow the time, which only the empty
        // queue's decay reads: the latest is found after the loop.
        let mut i = 0;
        if self.items.is_empty() {
            while i < n {
                last = last.max(times[i]);
                i += 1;
                if row!(i - 1, true, last) {
                    break;
                }
            }
        }
        let seen = i;
        for i in seen..n {
            row!(i, false, 0);
        }
        last = times[seen..].iter().fold(last, |m, &t| m.max(t));
        if !BYTES {
            backlog += queued[..k].iter().map(|&s| u64::from(s)).sum::<u64>();
        }
        st.enqueued += k as u64;
        self.items.extend(queued[..k].iter().map(|&size| Entry {
            item: T::default(),
            size,
        }));
        let red = &mut self.red;
        (red.avg, red.last, red.rng) = (avg, last, rng);
        red.count = count as i64;
        self.backlog = backlog;
        self.stats = st;
    }
}

#[cfg(test)]
// Exact float comparisons are the point of these tests; counts convert to f64 exactly.
#[allow(clippy::float_cmp, clippy::cast_precision_loss)]
mod tests {
    use super::*;

    fn cfg() -> RedConfig {
        RedConfig {
            w_q: 1.0,
            min_th: 5.0,
            max_th: 15.0,
            max_p: 0.1,
            limit: Some(1000),
            ..RedConfig::default()
        }
    }

    /// Arrivals with the average pinned at `level` (byte mode, w_q = 1, zero-size probes behind
    /// one packet of `level` bytes); the gaps between drops. The limit (which caps the packets
    /// too) is above the probes.
    fn gaps(rule: CountRule, level: u32, n: usize) -> Vec<usize> {
        let mut q = RedQueue::new(RedConfig {
            bytes_mode: true,
            count_rule: rule,
            limit: Some(1 << 20),
            ..cfg()
        })
        .unwrap();
        assert_eq!(q.enqueue((), level, false, 0), Ok(Verdict::Enqueued));
        let mut out = Vec::new();
        let mut last = 0;
        for i in 1..=n {
            if q.enqueue((), 0, false, 0).is_err() {
                out.push(i - last);
                last = i;
            }
        }
        out
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = |c: RedConfig, what: &str| {
            let e = c.validate().unwrap_err();
            assert!(e.0.contains(what), "{e}");
        };
        bad(
            RedConfig {
                min_th: 15.0,
                ..cfg()
            },
            "min_th must be below max_th",
        );
        bad(
            RedConfig {
                max_p: 0.0,
                ..cfg()
            },
            "max_p",
        );
        bad(
            RedConfig {
                max_p: 1.5,
                ..cfg()
            },
            "max_p",
        );
        bad(RedConfig { w_q: 0.0, ..cfg() }, "w_q");
        bad(
            RedConfig {
                min_th: -1.0,
                ..cfg()
            },
            "min_th",
        );
        bad(
            RedConfig {
                max_th: f64::NAN,
                ..cfg()
            },
            "max_th",
        );
        bad(
            RedConfig {
                limit: Some(0),
                ..cfg()
            },
            "limit",
        );
        bad(
            RedConfig {
                limit: Some(10),
                ..cfg()
            },
            "limit must be >= max_th",
        );
        bad(
            RedConfig {
                adaptive: true,
                max_p: 0.9,
                ..cfg()
            },
            "adaptive",
        );
        assert!(CountRule::parse("nope").is_err());
        let d = RedConfig::default();
        assert_eq!(d.validate(), Ok(60));
    }

    #[test]
    fn fj_gaps_are_uniform_and_bounded() {
        // avg 10: p_b = 0.05, gaps uniform on 1..=19.
        let g = gaps(CountRule::FloydJacobson, 10, 400_000);
        assert!(g.iter().all(|&x| (1..=20).contains(&x)));
        let mean = g.iter().sum::<usize>() as f64 / g.len() as f64;
        assert!((mean - 10.0).abs() < 0.1, "{mean}");
    }

    #[test]
    fn rules_have_their_supports() {
        let g = gaps(CountRule::Linux, 10, 200_000);
        assert_eq!(g.iter().skip(1).min(), Some(&1));
        assert_eq!(g.iter().skip(1).max(), Some(&20));
        let g = gaps(CountRule::Wait, 10, 200_000);
        assert_eq!(g.iter().min(), Some(&20));
        assert_eq!(g.iter().max(), Some(&39));
        let g = gaps(CountRule::Geometric, 10, 200_000);
        assert!(*g.iter().max().unwrap() > 100);
    }

    #[test]
    fn regions_and_ecn() {
        for (ecn, ect, harddrop, level, want) in [
            (false, true, true, 20, Err(())),
            (true, true, true, 20, Err(())),
            (true, true, false, 20, Ok(Verdict::Marked)),
            (true, false, false, 20, Err(())),
            (false, false, true, 3, Ok(Verdict::Enqueued)),
        ] {
            let mut q = RedQueue::new(RedConfig {
                bytes_mode: true,
                ecn,
                harddrop,
                limit: Some(100),
                ..cfg()
            })
            .unwrap();
            q.enqueue(0, level, false, 0).unwrap();
            assert_eq!(q.enqueue(1, 0, ect, 0).map_err(|_| ()), want);
        }
        // Early region with ECN: marks, never drops (the limit caps packets too: 1000 probes).
        let mut q = RedQueue::new(RedConfig {
            bytes_mode: true,
            ecn: true,
            limit: Some(10_000),
            ..cfg()
        })
        .unwrap();
        q.enqueue(0, 10, false, 0).unwrap();
        for _ in 0..1000 {
            assert!(q.enqueue(1, 0, true, 0).is_ok());
        }
        let s = q.stats();
        assert_eq!((s.early_drops, s.forced_drops), (0, 0));
        assert!(s.early_marks > 50);
    }

    #[test]
    fn ewma_step_and_idle_decay() {
        let w = 0.002;
        let mut q = RedQueue::new(RedConfig {
            w_q: w,
            bytes_mode: true,
            min_th: 1e6,
            max_th: 2e6,
            limit: Some(10_000_000),
            ..RedConfig::default()
        })
        .unwrap();
        q.enqueue((), 1000, false, 0).unwrap();
        for n in 1..=500 {
            q.enqueue((), 0, false, 0).unwrap();
            let want = 1000.0 * (1.0 - (1.0 - w).powi(n));
            assert!((q.avg() - want).abs() <= 1e-12 * want, "{n}");
        }
        let before = q.avg();
        while q.dequeue(1_000).is_some() {}
        // 1.2 ms per packet: 12 ms idle is m = 10.
        q.enqueue((), 0, false, 1_000 + 12_000_000).unwrap();
        let want = before * (1.0 - w).powi(10);
        assert!((q.avg() - want).abs() <= 1e-12 * want);
        // Time going backwards: no time elapsed, no panic.
        q.dequeue(0);
        q.enqueue((), 0, false, 5).unwrap();
        // A very long idle: exactly 0.
        q.dequeue(13_000_000);
        q.enqueue((), 0, false, 5_000_000_000_000_000).unwrap();
        assert_eq!(q.avg(), 0.0);
    }

    #[test]
    fn limit_bounds_the_queue() {
        let mut q = RedQueue::new(RedConfig {
            min_th: 100.0,
            max_th: 200.0,
            limit: Some(300),
            bytes_mode: true,
            ..RedConfig::default()
        })
        .unwrap();
        let mut ok = 0;
        for i in 0..100 {
            if q.enqueue(i, 7, false, 0).is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 42);
        assert_eq!(q.backlog(), 294);
        assert_eq!(q.stats().overlimit_drops, 58);
        assert_eq!(q.dequeue(0), Some(0));
        assert_eq!(q.len(), 41);
    }

    /// In byte mode the limit caps the packets too: zero-byte packets stop at `limit`, in
    /// `enqueue` and in the batch loop alike.
    #[test]
    fn zero_byte_packets_stop_at_the_limit() {
        let cfg = RedConfig {
            min_th: 5.0,
            max_th: 15.0,
            max_p: 0.1,
            bytes_mode: true,
            ..RedConfig::default()
        };
        let mut q = RedQueue::new(cfg.clone()).unwrap();
        assert_eq!(q.limit(), 60);
        let ok = (0..1000)
            .filter(|&i| q.enqueue(i, 0, false, 0).is_ok())
            .count();
        assert_eq!((ok, q.len()), (60, 60));
        assert_eq!(q.stats().overlimit_drops, 940);
        // The batch loop, against enqueue row by row, with sizes 0 and 1 mixed.
        let mut r = Rng::new(9);
        for case in 0..50 {
            let n = 1 + r.below(3 * RUN as u64) as usize;
            let sizes: Vec<u32> = (0..n).map(|_| u32::from(r.below(4) == 0)).collect();
            let times: Vec<Nanos> = (0..n as u64).map(|i| i * r.below(3)).collect();
            let mut fast = RedQueue::<u8>::new(cfg.clone()).unwrap();
            let mut slow = RedQueue::<u8>::new(cfg.clone()).unwrap();
            let mut out = vec![9u8; n];
            fast.enqueue_sizes(&sizes, &times, None, &mut out);
            for i in 0..n {
                let want = match slow.enqueue(0, sizes[i], false, times[i]) {
                    Ok(v) => v as u8,
                    Err(_) => Verdict::Dropped as u8,
                };
                assert_eq!(out[i], want, "case {case}, row {i}");
            }
            assert!(fast.len() <= 60);
            assert_eq!(fast.stats(), slow.stats(), "case {case}");
            assert_eq!((fast.len(), fast.backlog()), (slow.len(), slow.backlog()));
        }
    }

    /// Runs that fill the limit exactly, or one row or byte short of it or over it: the loop
    /// that skips the limit test (the run fits) against the one that makes it, against
    /// `enqueue` row by row.
    #[test]
    fn runs_around_the_limit() {
        for bytes_mode in [false, true] {
            for limit in [
                RUN as u64 - 1,
                RUN as u64,
                RUN as u64 + 1,
                2 * RUN as u64 + 5,
            ] {
                for size in [0, 1, 3] {
                    // Every row passes RED (the average stays near 0): only the limit refuses.
                    let cfg = RedConfig {
                        min_th: 1.0,
                        max_th: 2.0,
                        w_q: 1e-9,
                        limit: Some(if bytes_mode {
                            limit * u64::from(size.max(1))
                        } else {
                            limit
                        }),
                        bytes_mode,
                        ..RedConfig::default()
                    };
                    for first in [0, 1, RUN - 2, RUN - 1, RUN, RUN + 1, 3 * RUN] {
                        let mut fast = RedQueue::<u8>::new(cfg.clone()).unwrap();
                        let mut slow = RedQueue::<u8>::new(cfg.clone()).unwrap();
                        for n in [first, 2 * RUN + 3] {
                            let sizes = vec![size; n];
                            let times = vec![5; n];
                            let mut out = vec![9u8; n];
                            fast.enqueue_sizes(&sizes, &times, None, &mut out);
                            for (i, &o) in out.iter().enumerate() {
                                let want = match slow.enqueue(0, size, false, 5) {
                                    Ok(v) => v as u8,
                                    Err(_) => Verdict::Dropped as u8,
                                };
                                assert_eq!(o, want, "limit {limit}, size {size}, row {i}");
                            }
                            assert_eq!(fast.stats(), slow.stats());
                            assert_eq!((fast.len(), fast.backlog()), (slow.len(), slow.backlog()));
                        }
                    }
                }
            }
        }
    }

    /// A checkpoint undoes arrivals of both loops and of `enqueue`: what follows a rollback is
    /// what follows in a queue that never saw them.
    #[test]
    fn rollback_undoes_arrivals() {
        for (rule, adaptive) in [
            (CountRule::FloydJacobson, false),
            (CountRule::FloydJacobson, true),
            (CountRule::Linux, false),
        ] {
            let cfg = RedConfig {
                w_q: 0.1,
                max_p: 0.2,
                limit: Some(40),
                count_rule: rule,
                adaptive,
                adapt_interval: 1000,
                ..cfg()
            };
            let (mut a, mut b) = (
                RedQueue::<u8>::new(cfg.clone()).unwrap(),
                RedQueue::new(cfg).unwrap(),
            );
            let sizes = vec![1; 100];
            let times: Vec<Nanos> = (0..100).map(|i| i * 300).collect();
            let mut out = [0u8; 100];
            for q in [&mut a, &mut b] {
                q.enqueue_sizes(&sizes[..30], &times[..30], None, &mut out[..30]);
                q.pop(9_000);
            }
            let cp = a.checkpoint();
            a.enqueue_sizes(&sizes[30..], &times[30..], None, &mut out[30..]);
            let _ = a.enqueue(3, 1, false, 50_000);
            a.rollback(cp);
            let (mut x, mut y) = (vec![0u8; 70], vec![0u8; 70]);
            a.enqueue_sizes(&sizes[30..], &times[30..], None, &mut x);
            b.enqueue_sizes(&sizes[30..], &times[30..], None, &mut y);
            assert_eq!(x, y);
            assert_eq!(
                (a.stats(), a.len(), a.backlog()),
                (b.stats(), b.len(), b.backlog())
            );
            assert_eq!(
                (a.avg().to_bits(), a.count()),
                (b.avg().to_bits(), b.count())
            );
            assert_eq!(
                (&a.red.rng, a.red.next_tick, a.red.max_p.to_bits()),
                (&b.red.rng, b.red.next_tick, b.red.max_p.to_bits())
            );
        }
    }

    #[test]
    fn adaptive_steps() {
        let steps = |start: f64, up: bool| {
            let mut p = start;
            let mut n = 0;
            while if up { p < 0.5 } else { p > 0.01 } {
                p = if up {
                    (p + (0.01f64).min(p / 4.0)).min(0.5)
                } else {
                    (p * 0.9).max(0.01)
                };
                n += 1;
            }
            n
        };
        assert_eq!(steps(0.01, true), 53);
        assert_eq!(steps(0.5, false), 38);
        // A queue held at 20 packets (above the band [9, 11]) for 60 intervals.
        let mut q = RedQueue::new(RedConfig {
            adaptive: true,
            max_p: 0.01,
            ..cfg()
        })
        .unwrap();
        while q.len() < 14 {
            let _ = q.enqueue((), 1, false, 0);
        }
        let half = 500_000_000;
        for k in 1..=60u64 {
            let _ = q.enqueue((), 1, false, k * half);
            if k == 52 {
                assert!(q.max_p() < 0.5);
            }
        }
        assert_eq!(q.max_p(), 0.5);
        // Empty and idle for a minute: the decayed average is below the band at every tick.
        while q.dequeue(60 * half).is_some() {}
        let _ = q.enqueue((), 1, false, 60 * half + 120 * half);
        assert_eq!(q.max_p(), 0.01);
    }

    /// `enqueue_sizes` (fast loop or not) against `enqueue` row by row on random
    /// configurations: every verdict and, after each batch, the whole state.
    #[test]
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // small positive values
    fn enqueue_sizes_matches_enqueue() {
        let mut r = Rng::new(5);
        let rules = [
            CountRule::FloydJacobson,
            CountRule::FloydJacobson,
            CountRule::FloydJacobson,
            CountRule::Linux,
            CountRule::Wait,
            CountRule::Geometric,
        ];
        for case in 0..300 {
            let bytes_mode = r.below(2) == 1;
            let unit = if bytes_mode { 500.0 } else { 1.0 };
            let min_th = (1 + r.below(20)) as f64 * unit;
            let max_th = min_th + (1 + r.below(30)) as f64 * unit;
            let adaptive = r.below(6) == 0;
            let cfg = RedConfig {
                min_th,
                max_th,
                max_p: if adaptive {
                    0.01 + 0.49 * r.unit()
                } else {
                    0.01 + 0.99 * r.unit()
                },
                w_q: [1.0, 0.5, 0.1, 0.002][r.below(4) as usize],
                // From max_th (the queue overflows) to 5 max_th.
                limit: Some((max_th * (1.0 + 4.0 * r.unit())).ceil() as u64),
                gentle: r.below(2) == 1,
                ecn: r.below(2) == 1,
                adaptive,
                count_rule: rules[r.below(rules.len() as u64) as usize],
                bytes_mode,
                packet_time: 1 + r.below(2_000_000),
                harddrop: r.below(2) == 1,
                adapt_interval: 1 + r.below(50_000_000),
                seed: case,
            };
            let mut fast = RedQueue::<u8>::new(cfg.clone()).unwrap();
            let mut slow = RedQueue::<u8>::new(cfg).unwrap();
            let mut now = r.below(1_000_000);
            for _ in 0..4 {
                let n = [0, 1, 2, RUN - 1, RUN, RUN + 1, 2 * RUN + 3][r.below(7) as usize].max(
                    if r.below(2) == 0 {
                        r.below(3000) as usize
                    } else {
                        0
                    },
                );
                let max_size = if bytes_mode { 3 * unit as u64 } else { 2000 };
                let sizes: Vec<u32> = (0..n)
                    .map(|_| {
                        if r.below(8) == 0 {
                            0
                        } else {
                            r.below(max_size) as u32
                        }
                    })
                    .collect();
                let times: Vec<Nanos> = (0..n)
                    .map(|_| {
                        match r.below(20) {
                            // Backwards.
                            0 => now = now.saturating_sub(r.below(5_000_000)),
                            // An idle gap.
                            1 => now += r.below(1_000_000_000),
                            _ => now += r.below(20_000),
                        }
                        now
                    })
                    .collect();
                let ecn: Option<Vec<bool>> =
                    (r.below(3) != 0).then(|| (0..n).map(|_| r.below(2) == 1).collect());
                let mut out = vec![9u8; n];
                fast.enqueue_sizes(&sizes, &times, ecn.as_deref(), &mut out);
                for i in 0..n {
                    let ect = ecn.as_ref().is_some_and(|e| e[i]);
                    let want = match slow.enqueue(0, sizes[i], ect, times[i]) {
                        Ok(v) => v as u8,
                        Err(_) => Verdict::Dropped as u8,
                    };
                    assert_eq!(out[i], want, "case {case}, row {i} of {n}");
                }
                let (a, b) = (&fast.red, &slow.red);
                assert_eq!(a.avg.to_bits(), b.avg.to_bits(), "case {case}");
                assert_eq!((a.count, a.last, a.q_time), (b.count, b.last, b.q_time));
                assert_eq!(
                    (a.max_p.to_bits(), a.r.to_bits()),
                    (b.max_p.to_bits(), b.r.to_bits())
                );
                assert_eq!((&a.rng, a.next_tick), (&b.rng, b.next_tick));
                assert_eq!(fast.stats(), slow.stats(), "case {case}");
                assert_eq!((fast.len(), fast.backlog()), (slow.len(), slow.backlog()));
                let sizes = |q: &RedQueue<u8>| q.items.iter().map(|e| e.size).collect::<Vec<_>>();
                assert_eq!(sizes(&fast), sizes(&slow), "case {case}");
                // Drain some, or all (the next batch then starts after an idle period).
                let k = if r.below(3) == 0 {
                    usize::MAX
                } else {
                    r.below(50) as usize
                };
                now += r.below(100_000);
                for _ in 0..k {
                    let (x, y) = (fast.pop(now), slow.pop(now));
                    assert_eq!(x, y);
                    if x.is_none() {
                        break;
                    }
                }
            }
        }
    }
}
