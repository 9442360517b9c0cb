//! Core-only timing of the route table on a "prefix value" text file (plain, not gzip):
//! `cargo run --release -p meshcore-core --example lpm_speed FILE [LOOKUPS]`.
#![allow(clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::rand::Rng;
use meshcore_core::route::poptrie::Poptrie;
use meshcore_core::route::rib::Rib;
use meshcore_core::route::{parse_prefix, AnyPrefix};
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("a routes file");
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let text = std::fs::read_to_string(&path).expect("readable");
    let (mut v4, mut v6) = (Rib::<u32>::new(), Rib::<u128>::new());
    let t = Instant::now();
    for (i, line) in text.lines().enumerate() {
        let prefix = line.split_whitespace().next().unwrap_or("");
        // Next hops: 256 ids, neighbours often sharing one (as real FIBs do).
        let hop = ((i / 7) % 256) as u32;
        match parse_prefix(prefix, false) {
            Ok(AnyPrefix::V4(p)) => {
                v4.insert(p, hop);
            }
            Ok(AnyPrefix::V6(p)) => {
                v6.insert(p, hop);
            }
            Err(e) => panic!("line {}: {e}", i + 1),
        }
    }
    println!(
        "rib: {} v4, {} v6 routes in {:.2} s",
        v4.len(),
        v6.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let f4 = Poptrie::build(&v4);
    println!(
        "poptrie v4 build {:.3} s, {:.2} MiB",
        t.elapsed().as_secs_f64(),
        f4.memory() as f64 / (1 << 20) as f64
    );
    let mut rng = Rng::new(1);
    let addrs: Vec<u32> = (0..n).map(|_| rng.next_u64() as u32).collect();
    let t = Instant::now();
    let mut hits = 0u64;
    for &a in &addrs {
        hits += u64::from(f4.lookup(a).is_some());
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "v4 uniform: {:.1} M lookups/s ({hits} hits)",
        n as f64 / dt / 1e6
    );
    if !v6.is_empty() {
        let t = Instant::now();
        let f6 = Poptrie::build(&v6);
        println!(
            "poptrie v6 build {:.3} s, {:.2} MiB",
            t.elapsed().as_secs_f64(),
            f6.memory() as f64 / (1 << 20) as f64
        );
        let routes: Vec<_> = v6.iter().collect();
        let addrs: Vec<u128> = (0..n / 4)
            .map(|_| {
                let (p, _) = routes[rng.below(routes.len() as u64) as usize];
                p.addr()
                    | (u128::from(rng.next_u64())
                        & !u128::MAX.checked_shl(128 - u32::from(p.len())).unwrap_or(0))
                        >> 1
            })
            .collect();
        let t = Instant::now();
        let mut hits = 0u64;
        for &a in &addrs {
            hits += u64::from(f6.lookup(a).is_some());
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "v6 hit: {:.1} M lookups/s ({hits} hits)",
            addrs.len() as f64 / dt / 1e6
        );
    }
}
