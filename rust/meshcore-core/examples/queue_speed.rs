//! Core-only timing of the token-bucket batch (no Python), on the rows `benches/bench_queue.py`
//! uses: `cargo run --release -p meshcore-core --example queue_speed [N]`.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)] // timing arithmetic, small costs
use meshcore_core::queue::bucket::{all_at_most, TokenBucket};
use meshcore_core::queue::{nanos_checked_into, Ratio};
use meshcore_core::rand::Rng;
use std::time::Instant;

const CHUNK: usize = 256;

fn best<F: FnMut()>(name: &str, n: usize, mut f: F) -> f64 {
    if std::env::var("ONLY").is_ok_and(|o| o != name) {
        return f64::NAN;
    }
    let mut best = f64::INFINITY;
    let passes = std::env::var("PASSES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(15);
    for _ in 0..passes {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best / n as f64 * 1e9
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng::new(1);
    let costs: Vec<i64> = (0..n).map(|_| 1 + (rng.next_u64() % 1499) as i64).collect();
    let mut t = 0.0;
    let times: Vec<f64> = (0..n)
        .map(|_| {
            // Exponential gaps of mean 1 us.
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            t += -(1.0 - u).ln() * 1e-6;
            t
        })
        .collect();
    let mut out = vec![false; n];
    let mut ns = vec![0u64; n];
    assert!(nanos_checked_into(&times, &mut ns));
    // A fresh bucket for every timed pass: the same times again would all go backwards.
    let tb0 = TokenBucket::new(Ratio::integer(1_000_000_000), Ratio::integer(1_000_000)).unwrap();
    let mut tb = tb0.clone();

    let conv = best("conv", n, || {
        for (s, o) in times.chunks(CHUNK).zip(ns.chunks_mut(CHUNK)) {
            assert!(nanos_checked_into(s, o));
        }
    });
    let check = best("check", n, || {
        for c in costs.chunks(CHUNK) {
            assert!(all_at_most(c, 1_000_000));
        }
    });
    let rows = best("rows", n, || {
        tb = tb0.clone();
        tb.try_consume_rows(&costs, &ns, &mut out);
    });
    let all = best("all", n, || {
        tb = tb0.clone();
        let mut tbuf = [0u64; CHUNK];
        for ((c, s), o) in costs
            .chunks(CHUNK)
            .zip(times.chunks(CHUNK))
            .zip(out.chunks_mut(CHUNK))
        {
            assert!(all_at_most(c, 1_000_000));
            let tb_ = &mut tbuf[..s.len()];
            assert!(nanos_checked_into(s, tb_));
            tb.try_consume_rows(c, tb_, o);
        }
    });
    let stream = best("stream", n, || {
        let mut acc = 0u64;
        for (c, s) in costs.iter().zip(&times) {
            acc = acc.wrapping_add(c.unsigned_abs() ^ s.to_bits());
        }
        std::hint::black_box(acc);
    });
    // The same rows against slower buckets: some rows refused, then a third of them.
    for (name, rate, what) in [
        ("tight", 700_000_000, "rate-limited"),
        ("over", 375_000_000, "overloaded 2x"),
    ] {
        let b0 = TokenBucket::new(Ratio::integer(rate), Ratio::integer(1_000_000)).unwrap();
        let ns_row = best(name, n, || {
            tb = b0.clone();
            tb.try_consume_rows(&costs, &ns, &mut out);
        });
        let admitted = out.iter().filter(|&&o| o).count();
        println!("rows, {what} (admitted {admitted}): {ns_row:.2}");
    }
    let hot = best("hot", n, || {
        let mut tbuf = [0u64; CHUNK];
        for _ in 0..n / CHUNK {
            assert!(nanos_checked_into(
                std::hint::black_box(&times[..CHUNK]),
                &mut tbuf
            ));
        }
    });
    let hot_rows = best("hot_rows", n, || {
        for _ in 0..n / CHUNK {
            tb = tb0.clone();
            tb.try_consume_rows(&costs[..CHUNK], &ns[..CHUNK], &mut out[..CHUNK]);
        }
    });
    println!("in L1: convert {hot:.2}  rows {hot_rows:.2}");
    let admitted = out.iter().filter(|&&o| o).count();
    println!(
        "ns/row: convert {conv:.2}  cost check {check:.2}  rows {rows:.2}  all three in chunks {all:.2}  read both columns {stream:.2}  (admitted {admitted} of {n})"
    );
}
