//! Core-only timing of update replay: `cargo run --release -p meshcore-core --example
//! lpm_updates TABLE UPDATES [PASSES]` where TABLE holds "prefix value" lines and UPDATES "A prefix" /
//! "W prefix" lines (plain text). Announcements set the value `line & 255`.
//!
//! Setup (parsing, the initial build) dwarfs the replay, so the replay is one function, `replay`,
//! kept out of line. The day is replayed PASSES times (default 2: the day's updates, then the
//! same again on the table they left), each pass timed. To count one pass's instructions, run
//! it under `valgrind --tool=cachegrind` with PASSES 1 and with PASSES 0, and take the
//! difference.
#![allow(clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::route::table::Family;
use meshcore_core::route::{parse_prefix, AnyPrefix};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let table = std::fs::read_to_string(args.next().expect("a table file")).expect("readable");
    let updates = std::fs::read_to_string(args.next().expect("an updates file")).expect("readable");
    let passes: u32 = args
        .next()
        .map_or(2, |a| a.parse().expect("a number of passes"));
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (i, line) in table.lines().enumerate() {
        let hop = ((i / 7) % 256) as u32;
        match parse_prefix(line.split_whitespace().next().unwrap_or(""), false) {
            Ok(AnyPrefix::V4(p)) => v4.push((p, hop)),
            Ok(AnyPrefix::V6(p)) => v6.push((p, hop)),
            Err(e) => panic!("table line {}: {e}", i + 1),
        }
    }
    let ops: Vec<(bool, AnyPrefix)> = updates
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut f = line.split_whitespace();
            let kind = f.next() == Some("A");
            let p = parse_prefix(f.next().unwrap_or(""), false)
                .unwrap_or_else(|e| panic!("updates line {}: {e}", i + 1));
            (kind, p)
        })
        .collect();
    let mut f4 = Family::<u32>::default();
    f4.extend(&v4);
    let mut f6 = Family::<u128>::default();
    f6.extend(&v6);
    for pass in 1..=passes {
        let t = Instant::now();
        replay(&mut f4, &mut f6, &ops);
        let dt = t.elapsed().as_secs_f64();
        println!(
            "pass {pass}: {} updates in {dt:.2} s: {:.2} M updates/s, {:.3} us each",
            ops.len(),
            ops.len() as f64 / dt / 1e6,
            dt * 1e6 / ops.len() as f64
        );
    }
    println!("{} IPv4 and {} IPv6 routes after", f4.len(), f6.len());
}

/// Apply the updates one at a time, as small bursts do.
#[inline(never)]
fn replay(f4: &mut Family<u32>, f6: &mut Family<u128>, ops: &[(bool, AnyPrefix)]) {
    for (i, &(announce, p)) in ops.iter().enumerate() {
        let value = (i & 255) as u32;
        match (announce, p) {
            (true, AnyPrefix::V4(p)) => {
                f4.insert(p, value);
            }
            (false, AnyPrefix::V4(p)) => {
                f4.remove(p);
            }
            (true, AnyPrefix::V6(p)) => {
                f6.insert(p, value);
            }
            (false, AnyPrefix::V6(p)) => {
                f6.remove(p);
            }
        }
    }
}
