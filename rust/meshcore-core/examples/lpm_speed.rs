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
    println!(
        "  nodes, leaves: {:?}, narrow leaves: {}",
        f4.counts(),
        f4.narrow_leaves()
    );
    let mut rng = Rng::new(1);
    let addrs: Vec<u32> = (0..n).map(|_| rng.next_u64() as u32).collect();
    let mut hits = 0u64;
    let mut dt = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        hits = 0;
        for &a in &addrs {
            hits += u64::from(f4.lookup(a).is_some());
        }
        dt = dt.min(t.elapsed().as_secs_f64());
    }
    println!(
        "v4 uniform: {:.1} M lookups/s ({hits} hits)",
        n as f64 / dt / 1e6
    );
    let mut out = vec![0i64; n];
    let mut dt = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        f4.lookup_many(&addrs, &mut out);
        dt = dt.min(t.elapsed().as_secs_f64());
    }
    println!(
        "v4 uniform batch: {:.1} M lookups/s (best of 10)",
        n as f64 / dt / 1e6
    );
    // Hits: a random host inside a random table prefix.
    let routes4: Vec<_> = v4.iter().collect();
    let hit: Vec<u32> = (0..n)
        .map(|_| {
            let (p, _) = routes4[rng.below(routes4.len() as u64) as usize];
            p.addr()
                | (rng.next_u64() as u32
                    & !u32::MAX.checked_shl(32 - u32::from(p.len())).unwrap_or(0))
        })
        .collect();
    let mut dt = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        f4.lookup_many(&hit, &mut out);
        dt = dt.min(t.elapsed().as_secs_f64());
    }
    println!(
        "v4 hit batch: {:.1} M lookups/s (best of 10)",
        n as f64 / dt / 1e6
    );
    if std::env::var_os("LPM_CEILING").is_some() {
        // Memory ceiling: a bare gather from a table the size of the direct table.
        for bits in [18u32, 20, 24] {
            let table: Vec<u32> = (0..1u32 << bits).collect();
            let mut dt = f64::MAX;
            let mut sum = 0u64;
            for _ in 0..5 {
                let t = Instant::now();
                for (o, &a) in out.iter_mut().zip(&addrs) {
                    *o = i64::from(table[(a >> (32 - bits)) as usize]);
                }
                dt = dt.min(t.elapsed().as_secs_f64());
                sum = sum.wrapping_add(out[n / 2].unsigned_abs());
            }
            println!(
                "bare gather 2^{bits} x 4 B: {:.1} M/s ({sum})",
                n as f64 / dt / 1e6
            );
            let mut dt = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                f4.lookup_many(&addrs, &mut out);
                dt = dt.min(t.elapsed().as_secs_f64());
            }
            println!("  lookup_many again: {:.1} M/s", n as f64 / dt / 1e6);
        }
        // Compute ceiling: the same code with every address in a few cached slots.
        for (mask, name) in [
            (0x0000_3fffu32, "one direct slot"),
            (0x0003_ffff, "16 slots"),
        ] {
            let hot: Vec<u32> = addrs.iter().map(|&a| (a & mask) | 0x0800_0000).collect();
            let mut dt = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                f4.lookup_many(&hot, &mut out);
                dt = dt.min(t.elapsed().as_secs_f64());
            }
            println!("v4 batch, {name}: {:.1} M lookups/s", n as f64 / dt / 1e6);
        }
    }
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
        let mut out = vec![0i64; addrs.len()];
        let mut dt = f64::MAX;
        for _ in 0..10 {
            let t = Instant::now();
            f6.lookup_many(&addrs, &mut out);
            dt = dt.min(t.elapsed().as_secs_f64());
        }
        println!(
            "v6 hit batch: {:.1} M lookups/s (best of 10)",
            addrs.len() as f64 / dt / 1e6
        );
    }
}
