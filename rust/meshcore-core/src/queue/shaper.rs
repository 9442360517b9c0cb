//! [`LeakyBucket`]: a pacing shaper (Turner's leaky bucket as a queue, burst = one packet).
//!
//! Packets join a FIFO; packet `i` may leave at
//! `start_i = max(arrival_i, start_{i-1} + size_{i-1} / rate)`, so the output never carries more
//! than one packet plus `rate * W` bytes in any window `W`. Start times are kept exactly, as
//! integers in units of `1/p` ns where `rate` = `p / q` bytes per ns in lowest terms (a byte
//! takes `q` units), so a million packets later the schedule has not drifted by a nanosecond.
//! The schedule is fixed at arrival: a late `dequeue` does not push later packets back.
//!
//! Two forms share the schedule:
//! - the queue: [`enqueue`](LeakyBucket::enqueue) holds an item until a
//!   [`dequeue`](LeakyBucket::dequeue) at or after its start time takes it;
//! - the self-draining form, [`schedule`](LeakyBucket::schedule): a packet leaves by itself at
//!   its start time, and only its departure time is returned.
//!
//! Limits (`limit` bytes, `packet_limit` packets) count the packets held: queued items not yet
//! dequeued, plus self-draining packets whose start time is still after the arrival. An arrival
//! that would take either count past its limit is dropped and does not touch the schedule.
//! `limit` also caps the packets held at `limit` packets, so that zero-byte packets cannot
//! grow the queue without bound (as each holds memory however short it is).
//! Time going backwards counts as no time elapsed.

use super::{Nanos, ParamError, Ratio, NANOS_PER_SEC};
use std::collections::VecDeque;

/// With neither `limit` nor `packet_limit` given, the queue form holds at most this many items
/// (fq_codel's default limit), so a flood cannot grow it without bound. The self-draining form
/// holds no items, only 16 bytes of schedule per packet still to start.
pub const DEFAULT_HELD: usize = 10_240;

/// Largest `p` and `q` kept: `now * p` and `size * q` stay below 2**127.
const MAX_TERM: u128 = 1 << 64;

/// A packet in the queue.
#[derive(Debug, Clone)]
struct Held<T> {
    item: T,
    size: u64,
    /// Start time in units of 1/p ns.
    start: u128,
}

/// A constant-rate shaper queue holding items of type `T`.
#[derive(Debug, Clone)]
pub struct LeakyBucket<T> {
    rate: Ratio,
    /// rate = p / q bytes per ns.
    p: u128,
    q: u128,
    limit: Option<u64>,
    packet_limit: Option<u64>,
    queue: VecDeque<Held<T>>,
    /// Self-draining packets scheduled by `schedule`: (start, size), in start order.
    drained: VecDeque<(u128, u64)>,
    /// Bytes held, queue and self-draining packets together.
    held_bytes: u128,
    /// Bytes of the queue alone.
    queued_bytes: u128,
    /// When the link is free for the next packet, in units of 1/p ns.
    free_at: u128,
    last: Nanos,
}

impl<T> LeakyBucket<T> {
    /// `rate` > 0 bytes/s; `limit` bytes and `packet_limit` packets held at most (`None`:
    /// unlimited).
    pub fn new(
        rate: Ratio,
        limit: Option<u64>,
        packet_limit: Option<u64>,
    ) -> Result<LeakyBucket<T>, ParamError> {
        if rate.is_zero() {
            return Err(ParamError("rate must be > 0 bytes/s, got 0".into()));
        }
        let too_precise = || {
            ParamError(format!(
                "rate = {rate} bytes/s is too precise to schedule exactly \
                 (keep it to a few significant digits, or pass an int or Fraction)"
            ))
        };
        // bytes per ns = num / (den * 1e9) = p / q in lowest terms.
        let per_ns = rate
            .den()
            .checked_mul(u128::from(NANOS_PER_SEC))
            .and_then(|d| Ratio::new(rate.num(), d))
            .ok_or_else(too_precise)?;
        if per_ns.num() > MAX_TERM || per_ns.den() > MAX_TERM {
            return Err(too_precise());
        }
        Ok(LeakyBucket {
            rate,
            p: per_ns.num(),
            q: per_ns.den(),
            limit,
            packet_limit,
            queue: VecDeque::new(),
            drained: VecDeque::new(),
            held_bytes: 0,
            queued_bytes: 0,
            free_at: 0,
            last: 0,
        })
    }

    pub fn rate(&self) -> Ratio {
        self.rate
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn packet_limit(&self) -> Option<u64> {
        self.packet_limit
    }

    /// Items in the queue.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes of the items in the queue.
    pub fn backlog(&self) -> u128 {
        self.queued_bytes
    }

    /// `now` moved forward only, then in units.
    fn tick(&mut self, now: Nanos) -> u128 {
        self.last = self.last.max(now);
        u128::from(self.last) * self.p
    }

    /// Let self-draining packets that have started by `t` (units) go.
    fn drain_to(&mut self, t: u128) {
        while let Some(&(start, size)) = self.drained.front() {
            if start > t {
                break;
            }
            self.drained.pop_front();
            self.held_bytes -= u128::from(size);
        }
    }

    /// Schedule a packet of `size` bytes arriving at `t` (units): its start time, or `None` if
    /// a limit drops it.
    fn admit(&mut self, size: u64, t: u128) -> Option<u128> {
        self.drain_to(t);
        let packets = (self.queue.len() + self.drained.len()) as u64;
        let over_bytes = self
            .limit
            .is_some_and(|l| self.held_bytes + u128::from(size) > u128::from(l));
        // A byte limit also caps the packets held at `limit` (zero-byte packets would else
        // grow the queue without bound); packets of a byte or more never reach that cap first.
        let over_packets = self.packet_limit.is_some_and(|l| packets >= l)
            || self.limit.is_some_and(|l| packets >= l);
        if over_bytes || over_packets {
            return None;
        }
        let start = self.free_at.max(t);
        // size * q < 2**128; saturation only after ~2**60 bytes at the slowest rates.
        self.free_at = start.saturating_add(u128::from(size) * self.q);
        self.held_bytes += u128::from(size);
        Some(start)
    }

    /// Queue `item` of `size` bytes arriving at `now`: `Ok(())` (enqueued) or the item handed
    /// back when a limit drops it, so the caller decides where it is released.
    pub fn enqueue(&mut self, item: T, size: u64, now: Nanos) -> Result<(), T> {
        let unlimited = self.limit.is_none() && self.packet_limit.is_none();
        if unlimited && self.queue.len() >= DEFAULT_HELD {
            return Err(item);
        }
        let t = self.tick(now);
        match self.admit(size, t) {
            Some(start) => {
                self.queued_bytes += u128::from(size);
                self.queue.push_back(Held { item, size, start });
                Ok(())
            }
            None => Err(item),
        }
    }

    /// The head item if its start time has come by `now`.
    pub fn dequeue(&mut self, now: Nanos) -> Option<T> {
        let t = self.tick(now);
        if self.queue.front()?.start > t {
            return None;
        }
        let h = self.queue.pop_front()?;
        self.held_bytes -= u128::from(h.size);
        self.queued_bytes -= u128::from(h.size);
        Some(h.item)
    }

    /// The first whole ns at which the head item may leave.
    pub fn next_departure(&self) -> Option<Nanos> {
        let h = self.queue.front()?;
        Some(self.ceil_ns(h.start))
    }

    fn ceil_ns(&self, units: u128) -> Nanos {
        // A u64 division when both fit: u128 division is a slow library call.
        if let (Ok(u), Ok(p)) = (u64::try_from(units), u64::try_from(self.p)) {
            return u.div_ceil(p);
        }
        u64::try_from(units.div_ceil(self.p)).unwrap_or(u64::MAX)
    }

    /// The self-draining form: schedule a packet of `size` bytes arriving at `now`; its
    /// departure (start) time rounded up to the ns, or `None` when dropped.
    pub fn schedule(&mut self, size: u64, now: Nanos) -> Option<Nanos> {
        let t = self.tick(now);
        let start = self.admit(size, t)?;
        self.drained.push_back((start, size));
        Some(self.ceil_ns(start))
    }

    /// The exact departure (start) time of the head item, in seconds as a ratio.
    pub fn head_start_exact(&self) -> Option<Ratio> {
        let h = self.queue.front()?;
        Ratio::new(h.start, self.p * u128::from(NANOS_PER_SEC))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    const S: u64 = NANOS_PER_SEC;

    #[test]
    fn an_unlimited_queue_is_still_bounded() {
        let mut lb: LeakyBucket<u32> = LeakyBucket::new(Ratio::integer(1), None, None).unwrap();
        for i in 0..DEFAULT_HELD {
            assert_eq!(lb.enqueue(u32::try_from(i).unwrap(), 1, 0), Ok(()));
        }
        assert_eq!(lb.enqueue(7, 1, 0), Err(7));
        assert_eq!(lb.dequeue(0), Some(0));
        assert_eq!(lb.enqueue(8, 1, 0), Ok(()));
        // A limit given by the caller replaces the default bound.
        let mut big: LeakyBucket<u32> =
            LeakyBucket::new(Ratio::integer(1), None, Some(2 * DEFAULT_HELD as u64)).unwrap();
        for i in 0..=DEFAULT_HELD {
            assert_eq!(big.enqueue(u32::try_from(i).unwrap(), 1, 0), Ok(()));
        }
    }

    /// A byte limit caps the packets held at `limit`: zero-byte packets cannot pile up, in
    /// the queue or in the self-draining schedule (behind a busy link).
    #[test]
    fn zero_byte_packets_stop_at_the_byte_limit() {
        let mut lb: LeakyBucket<u32> =
            LeakyBucket::new(Ratio::integer(1000), Some(3000), None).unwrap();
        let ok = (0..5000).filter(|&i| lb.enqueue(i, 0, 0).is_ok()).count();
        assert_eq!((ok, lb.len()), (3000, 3000));
        let mut lb: LeakyBucket<u32> =
            LeakyBucket::new(Ratio::integer(1000), Some(10), None).unwrap();
        // A 10-byte packet takes the link for 10 ms (it has started, so it is not held);
        // zero-byte ones wait behind it, held until then: 10 of them at most.
        assert_eq!(lb.schedule(10, 0), Some(0));
        let ok = (0..100).filter(|_| lb.schedule(0, 0).is_some()).count();
        assert_eq!(ok, 10);
        // An explicit packet limit still applies below it.
        let mut lb: LeakyBucket<u32> =
            LeakyBucket::new(Ratio::integer(1000), Some(3000), Some(7)).unwrap();
        let ok = (0..100).filter(|&i| lb.enqueue(i, 0, 0).is_ok()).count();
        assert_eq!(ok, 7);
    }

    #[test]
    fn paces_exactly_and_keeps_fifo_order() {
        // 3 bytes/s: a 1-byte packet takes 1/3 s, which no ns count holds exactly.
        let mut lb: LeakyBucket<u32> = LeakyBucket::new(Ratio::integer(3), None, None).unwrap();
        for i in 0..3000 {
            assert_eq!(lb.enqueue(i, 1, 0), Ok(()));
        }
        assert_eq!(lb.next_departure(), Some(0));
        assert_eq!(lb.dequeue(0), Some(0));
        assert_eq!(lb.next_departure(), Some(333_333_334)); // ceil(1e9/3)
        assert_eq!(lb.dequeue(333_333_333), None);
        assert_eq!(lb.dequeue(333_333_334), Some(1));
        // After 999 s exactly 2997 + 1 packets may have left: no drift.
        let mut n = 2;
        while lb.dequeue(999 * S).is_some() {
            n += 1;
        }
        assert_eq!(n, 2998);
        assert_eq!(lb.head_start_exact(), Ratio::new(2998, 3));
    }

    #[test]
    fn limits_drop_and_leave_the_schedule_alone() {
        let mut lb: LeakyBucket<&str> =
            LeakyBucket::new(Ratio::integer(1000), Some(2500), Some(2)).unwrap();
        assert_eq!(lb.enqueue("a", 1000, 0), Ok(()));
        assert_eq!(lb.enqueue("b", 1000, 0), Ok(()));
        assert_eq!(lb.enqueue("c", 100, 0), Err("c")); // packet limit
        assert_eq!(lb.dequeue(0), Some("a"));
        assert_eq!(lb.enqueue("d", 1600, 0), Err("d")); // 1000 + 1600 > 2500
        assert_eq!(lb.enqueue("e", 1500, 0), Ok(()));
        assert_eq!(lb.backlog(), 2500);
        assert_eq!(lb.dequeue(S - 1), None);
        assert_eq!(lb.dequeue(S), Some("b"));
        assert_eq!(lb.next_departure(), Some(2 * S));
        // Self-draining packets are held until they start.
        let mut sd: LeakyBucket<()> = LeakyBucket::new(Ratio::integer(1), None, Some(2)).unwrap();
        assert_eq!(sd.schedule(1, 0), Some(0));
        assert_eq!(sd.schedule(1, 0), Some(S));
        assert_eq!(sd.schedule(1, 0), Some(2 * S));
        assert_eq!(sd.schedule(1, 0), None); // two are still waiting to start
        assert_eq!(sd.schedule(1, S), Some(3 * S));
    }

    #[test]
    fn output_windows_carry_at_most_one_packet_plus_rate() {
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let p = 1 + u128::from(rng.next_u64() % 10_000);
            let q = 1 + u128::from(rng.next_u64() % 100);
            let rate = Ratio::new(p, q).unwrap(); // bytes/s
            let mut lb: LeakyBucket<usize> = LeakyBucket::new(rate, None, None).unwrap();
            let mut t = 0;
            let mut sizes = Vec::new();
            let mut starts: Vec<Nanos> = Vec::new();
            for i in 0..200 {
                t += rng.next_u64() % (S / 10);
                let size = 1 + rng.next_u64() % 1500;
                sizes.push(size);
                lb.enqueue(i, size, t).unwrap();
            }
            let mut now = 0;
            while starts.len() < sizes.len() {
                now = lb.next_departure().unwrap().max(now);
                let i = lb.dequeue(now).unwrap();
                assert_eq!(i, starts.len()); // FIFO
                starts.push(now);
            }
            // Bytes leaving in [start_i, start_j] <= size_max + rate (start_j - start_i): the
            // j-th packet starts only after packets i..j-1 have been sent.
            for i in 0..starts.len() {
                let mut bytes: u128 = 0;
                for j in i..starts.len() {
                    let dt = u128::from(starts[j] - starts[i]);
                    // bytes before j fit in [start_i, start_j]: bytes <= rate * dt (+1 ns
                    // of rounding up per start) => bytes * q * 1e9 <= p * (dt + 1).
                    assert!(bytes * q * u128::from(S) <= p * (dt + 1));
                    bytes += u128::from(sizes[j]);
                }
            }
        }
    }

    #[test]
    fn refuses_zero_and_too_precise_rates() {
        assert!(LeakyBucket::<()>::new(Ratio::ZERO, None, None).is_err());
        let silly = Ratio::new(1, 1 << 100).unwrap();
        assert!(LeakyBucket::<()>::new(silly, None, None).is_err());
    }
}
