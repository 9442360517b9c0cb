//! Core-only timing of update replay: `cargo run --release -p meshcore-core --example
//! lpm_updates TABLE UPDATES` where TABLE holds "prefix value" lines and UPDATES "A prefix" /
//! "W prefix" lines (plain text). Announcements set the value `line & 255`.
#![allow(clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::route::table::Family;
use meshcore_core::route::{parse_prefix, AnyPrefix};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let table = std::fs::read_to_string(args.next().expect("a table file")).expect("readable");
    let updates = std::fs::read_to_string(args.next().expect("an updates file")).expect("readable");
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
    let t = Instant::now();
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
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{} updates in {dt:.2} s: {:.2} M updates/s, {:.2} us each",
        ops.len(),
        ops.len() as f64 / dt / 1e6,
        dt * 1e6 / ops.len() as f64
    );
}
