//! CoDel, "Controlled Delay" (RFC 8289), following the RFC's pseudocode (section 5).
//!
//! Packets are stamped at enqueue; the decision is made at dequeue on the sojourn time
//! `d = now - stamp` of the head:
//! - `d < target`, or at most one MTU left queued after taking the head: the queue is fine,
//!   `first_above_time` is cleared.
//! - Otherwise the first such dequeue sets `first_above_time = now + interval`, and once
//!   `now >= first_above_time` dropping is allowed (`ok_to_drop`).
//! - Entering the dropping state drops the head (and takes the next); `count` restarts at 1, or
//!   at `count - lastcount` when that is above 1 and the previous dropping state ended less than
//!   16 intervals ago (the re-entry rule); `drop_next = now + interval / sqrt(count)`.
//! - In the dropping state each dequeue at or after `drop_next` drops the head, `count += 1`,
//!   `drop_next += interval / sqrt(count)` (the control law), repeated while due; a head below
//!   target (or an empty queue) leaves the state.
//!
//! With ECN on, an ECN-capable packet that would be dropped is marked CE and delivered instead,
//! ending that dequeue (as Linux `codel_dequeue` does). `interval / sqrt(count)` is computed in
//! f64 and rounded to the nanosecond (Linux uses a Q0.16 Newton step and 1024 ns units).
//!
//! The queue holds at most `limit` packets; arrivals beyond are dropped at enqueue (the only
//! enqueue drop). Time going backwards counts as no time elapsed.

use super::{Nanos, ParamError, Verdict};
use std::collections::VecDeque;

/// CoDel parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodelConfig {
    /// Acceptable standing sojourn time, ns (RFC default 5 ms).
    pub target: Nanos,
    /// Window over which the sojourn time must stay above target, ns (default 100 ms).
    pub interval: Nanos,
    /// Capacity in packets (Linux default 1000).
    pub limit: u64,
    /// Bytes of a maximum-size packet: no drops while at most this much is queued.
    pub mtu: u64,
    /// Mark ECN-capable packets instead of dropping them.
    pub ecn: bool,
}

impl Default for CodelConfig {
    fn default() -> Self {
        CodelConfig {
            target: 5_000_000,
            interval: 100_000_000,
            limit: 1000,
            mtu: 1514,
            ecn: false,
        }
    }
}

impl CodelConfig {
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.target == 0 {
            return Err(ParamError("target must be > 0 seconds".into()));
        }
        if self.interval == 0 {
            return Err(ParamError("interval must be > 0 seconds".into()));
        }
        if self.limit == 0 {
            return Err(ParamError("limit must be >= 1 packet".into()));
        }
        Ok(())
    }
}

/// Event counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodelStats {
    pub enqueued: u64,
    /// Packets delivered by dequeue (marked ones included).
    pub dequeued: u64,
    /// Packets dropped by the control law at dequeue.
    pub drops: u64,
    /// Arrivals refused because the queue held `limit` packets.
    pub overlimit_drops: u64,
    /// Packets delivered with CE instead of being dropped.
    pub marks: u64,
}

/// A packet that [`Codel::dequeue`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered<T> {
    pub item: T,
    /// Bytes, as given at enqueue.
    pub size: u32,
    /// `Enqueued` (unchanged) or `Marked` (CE set instead of a drop).
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    item: T,
    size: u32,
    stamp: Nanos,
    ect: bool,
}

impl<T> Entry<T> {
    fn delivered(self, verdict: Verdict) -> Delivered<T> {
        Delivered {
            item: self.item,
            size: self.size,
            verdict,
        }
    }
}

/// A bounded FIFO of `T` under CoDel (see the module documentation).
#[derive(Debug, Clone)]
pub struct Codel<T> {
    cfg: CodelConfig,
    items: VecDeque<Entry<T>>,
    backlog: u64,
    first_above_time: Option<Nanos>,
    drop_next: Nanos,
    count: u64,
    lastcount: u64,
    dropping: bool,
    last: Nanos,
    stats: CodelStats,
}

impl<T> Codel<T> {
    pub fn new(cfg: CodelConfig) -> Result<Codel<T>, ParamError> {
        cfg.validate()?;
        Ok(Codel {
            cfg,
            items: VecDeque::new(),
            backlog: 0,
            first_above_time: None,
            drop_next: 0,
            count: 0,
            lastcount: 0,
            dropping: false,
            last: 0,
            stats: CodelStats::default(),
        })
    }

    #[inline]
    fn clock(&mut self, now: Nanos) -> Nanos {
        self.last = self.last.max(now);
        self.last
    }

    /// `t + interval / sqrt(count)`, rounded to the nanosecond.
    pub fn control_law(&self, t: Nanos, count: u64) -> Nanos {
        #[allow(clippy::cast_precision_loss)] // interval < 2**63 ns, count small
        let step = self.cfg.interval as f64 / (count.max(1) as f64).sqrt();
        #[allow(clippy::cast_sign_loss)] // positive and at most interval
        let step = step.round() as u64;
        t.saturating_add(step)
    }

    /// Queue `item` of `size` bytes at `now`: `Ok(Enqueued)`, or `Err(item)` when `limit`
    /// packets are already queued.
    #[inline]
    pub fn enqueue(
        &mut self,
        item: T,
        size: u32,
        ecn_capable: bool,
        now: Nanos,
    ) -> Result<Verdict, T> {
        let now = self.clock(now);
        if self.items.len() as u64 >= self.cfg.limit {
            self.stats.overlimit_drops += 1;
            return Err(item);
        }
        self.stats.enqueued += 1;
        self.backlog += u64::from(size);
        self.items.push_back(Entry {
            item,
            size,
            stamp: now,
            ect: ecn_capable,
        });
        Ok(Verdict::Enqueued)
    }

    /// The RFC's `dodequeue`: take the head and say whether it may be dropped.
    fn dodequeue(&mut self, now: Nanos) -> (Option<Entry<T>>, bool) {
        let Some(e) = self.items.pop_front() else {
            self.first_above_time = None;
            return (None, false);
        };
        self.backlog -= u64::from(e.size);
        let sojourn = now.saturating_sub(e.stamp);
        let mut ok_to_drop = false;
        if sojourn < self.cfg.target || self.backlog <= self.cfg.mtu {
            self.first_above_time = None;
        } else {
            match self.first_above_time {
                None => self.first_above_time = Some(now.saturating_add(self.cfg.interval)),
                Some(t) => ok_to_drop = now >= t,
            }
        }
        (Some(e), ok_to_drop)
    }

    /// Deliver the next packet at `now`, `Enqueued` (unchanged) or `Marked` (CE set); None
    /// when the queue runs empty. Packets CoDel drops on the way are pushed onto `dropped`.
    pub fn dequeue(&mut self, now: Nanos, dropped: &mut Vec<T>) -> Option<Delivered<T>> {
        let now = self.clock(now);
        let (mut p, ok_to_drop) = self.dodequeue(now);
        let ecn = self.cfg.ecn;
        if self.dropping {
            if !ok_to_drop {
                self.dropping = false;
            }
            while self.dropping && now >= self.drop_next {
                // dropping implies ok_to_drop, which implies a packet.
                let Some(e) = p.take() else { break };
                self.count += 1;
                if ecn && e.ect {
                    self.stats.marks += 1;
                    self.stats.dequeued += 1;
                    self.drop_next = self.control_law(self.drop_next, self.count);
                    return Some(e.delivered(Verdict::Marked));
                }
                self.stats.drops += 1;
                dropped.push(e.item);
                let (next, ok) = self.dodequeue(now);
                p = next;
                if ok {
                    self.drop_next = self.control_law(self.drop_next, self.count);
                } else {
                    self.dropping = false;
                }
            }
        } else if ok_to_drop {
            let mut verdict = Verdict::Enqueued;
            if let Some(e) = p.take() {
                if ecn && e.ect {
                    self.stats.marks += 1;
                    verdict = Verdict::Marked;
                    p = Some(e);
                } else {
                    self.stats.drops += 1;
                    dropped.push(e.item);
                    p = self.dodequeue(now).0;
                }
            }
            self.dropping = true;
            let delta = self.count - self.lastcount;
            // Saturating: the constructor takes intervals up to 2**64 ns, and 16 of them may
            // not fit (then every earlier state is recent).
            let recent =
                now < self.drop_next || now - self.drop_next < self.cfg.interval.saturating_mul(16);
            self.count = if delta > 1 && recent { delta } else { 1 };
            self.drop_next = self.control_law(now, self.count);
            self.lastcount = self.count;
            if let Some(e) = p {
                self.stats.dequeued += 1;
                return Some(e.delivered(verdict));
            }
            return None;
        }
        let e = p?;
        self.stats.dequeued += 1;
        Some(e.delivered(Verdict::Enqueued))
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

    /// Drops (and marks) in the current or latest dropping state, as the control law counts.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether CoDel is in its dropping state.
    pub fn dropping(&self) -> bool {
        self.dropping
    }

    /// When the next drop is due while dropping (ns).
    pub fn drop_next(&self) -> Nanos {
        self.drop_next
    }

    pub fn config(&self) -> &CodelConfig {
        &self.cfg
    }

    pub fn stats(&self) -> CodelStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// An interval of 2**60 ns or more (16 of them overflow a u64): entering the dropping
    /// state checks the re-entry rule without overflow, and drops as the control law says.
    #[test]
    fn huge_intervals_enter_the_dropping_state() {
        for interval in [1 << 60, 1 << 62, u64::MAX / 2, u64::MAX] {
            let mut q = Codel::new(CodelConfig {
                interval,
                mtu: 0,
                ..CodelConfig::default()
            })
            .unwrap();
            for i in 0..4 {
                q.enqueue(i, 1500, false, 0).unwrap();
            }
            let mut dropped = Vec::new();
            // Above target: first_above_time = now + interval (saturating).
            assert!(q.dequeue(10 * MS, &mut dropped).is_some());
            let at = (10 * MS).saturating_add(interval);
            assert!(q.dequeue(at, &mut dropped).is_some());
            assert!(q.dropping(), "{interval}");
            assert_eq!((dropped, q.count()), (vec![1], 1));
        }
    }

    /// A queue filled with `n` 1500-byte packets at t = 0, drained one packet per `gap`: the
    /// times (and counts) of the drops.
    fn drain(n: u32, gap: Nanos, ecn: bool) -> (Vec<(Nanos, u64)>, Codel<u32>) {
        let mut q = Codel::new(CodelConfig {
            ecn,
            ..CodelConfig::default()
        })
        .unwrap();
        for i in 0..n {
            q.enqueue(i, 1500, true, 0).unwrap();
        }
        let mut drops = Vec::new();
        let mut dropped = Vec::new();
        let mut t = 0;
        while !q.is_empty() {
            t += gap;
            let before = q.stats().drops + q.stats().marks;
            q.dequeue(t, &mut dropped);
            for _ in before..q.stats().drops + q.stats().marks {
                drops.push((t, q.count()));
            }
        }
        (drops, q)
    }

    #[test]
    fn validation() {
        let bad = |c: CodelConfig, what: &str| {
            assert!(c.validate().unwrap_err().0.contains(what));
        };
        bad(
            CodelConfig {
                target: 0,
                ..CodelConfig::default()
            },
            "target",
        );
        bad(
            CodelConfig {
                interval: 0,
                ..CodelConfig::default()
            },
            "interval",
        );
        bad(
            CodelConfig {
                limit: 0,
                ..CodelConfig::default()
            },
            "limit",
        );
    }

    #[test]
    fn overflow_is_the_only_enqueue_drop() {
        let mut q = Codel::new(CodelConfig {
            limit: 3,
            ..CodelConfig::default()
        })
        .unwrap();
        for i in 0..3 {
            assert_eq!(q.enqueue(i, 100, false, 0), Ok(Verdict::Enqueued));
        }
        assert_eq!(q.enqueue(9, 100, false, 0), Err(9));
        assert_eq!(q.stats().overlimit_drops, 1);
        assert_eq!(q.backlog(), 300);
    }

    #[test]
    fn no_drops_below_target() {
        let (drops, q) = drain(200, 4 * MS, false);
        // Drained at 4 ms a packet, the sojourn time grows past target: drops.
        assert!(!drops.is_empty());
        assert_eq!(q.stats().drops, drops.len() as u64);
        // Every packet leaves 4 ms after it came: below target, never a drop.
        let mut q: Codel<u8> = Codel::new(CodelConfig::default()).unwrap();
        let mut dropped = Vec::new();
        for k in 0..10_000u64 {
            q.enqueue(0, 1500, false, k * MS).unwrap();
            q.enqueue(0, 1500, false, k * MS).unwrap();
            q.dequeue(k * MS + 4 * MS, &mut dropped);
            q.dequeue(k * MS + 4 * MS, &mut dropped);
        }
        assert!(dropped.is_empty());
    }

    #[test]
    fn control_law_spacing() {
        let (drops, _) = drain(400, 10 * MS, false);
        // First above target at the dequeue at 10 ms (sojourn 10 ms): first_above_time = 110 ms;
        // dropping starts at the dequeue at 110 ms.
        assert_eq!(drops[0], (110 * MS, 1));
        let q: Codel<u8> = Codel::new(CodelConfig::default()).unwrap();
        let mut next = q.control_law(110 * MS, 1);
        for w in drops.windows(2) {
            let (t, count) = w[1];
            // The drop with this count happens at the first dequeue at or after drop_next.
            assert!(t >= next && t < next + 10 * MS, "{t} {next}");
            next = q.control_law(next, count);
        }
        assert_eq!(q.control_law(0, 4), 50 * MS);
    }

    #[test]
    fn ecn_marks_instead() {
        let (marks, q) = drain(300, 10 * MS, true);
        assert!(!marks.is_empty());
        assert_eq!(q.stats().drops, 0);
        assert_eq!(q.stats().dequeued, 300);
    }

    #[test]
    fn reentry_resumes_count() {
        let mut q: Codel<u8> = Codel::new(CodelConfig::default()).unwrap();
        let mut dropped = Vec::new();
        for _ in 0..300 {
            q.enqueue(0, 1500, false, 0).unwrap();
        }
        let mut t = 0;
        while q.len() > 1 && q.count() < 8 {
            t += 10 * MS;
            q.dequeue(t, &mut dropped);
        }
        let c = q.count();
        // Drain quickly below target: leave the dropping state.
        while q.dequeue(t, &mut dropped).is_some() {}
        assert!(!q.dropping());
        // A new standing queue soon after: re-entry at count - lastcount (lastcount was 1).
        for _ in 0..300 {
            q.enqueue(0, 1500, false, t).unwrap();
        }
        let start = t;
        while !q.dropping() {
            t += 10 * MS;
            q.dequeue(t, &mut dropped);
        }
        assert!(t - start < 16 * 100 * MS);
        assert_eq!(q.count(), c - 1);
    }
}
