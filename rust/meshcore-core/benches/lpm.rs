//! Criterion benchmark of the route-table core alone (no Python): single and batch lookups
//! for both families, and updates.
//!
//! `cargo bench -p meshcore-core --bench lpm`. With `MESHCORE_ROUTES=FILE` ("prefix [value]"
//! lines, IPv4 and IPv6 mixed, plain text) it runs on that table; otherwise on a synthetic
//! table of the same shape as a full BGP table (1,000,000 IPv4 prefixes with the RIS length
//! mix, 200,000 IPv6 prefixes, /48-heavy, under /32 allocations). Next hops: 256 ids, runs of neighbours sharing one.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use meshcore_core::rand::Rng;
use meshcore_core::route::table::Family;
use meshcore_core::route::{parse_prefix, AnyPrefix, Prefix};
use std::hint::black_box;

/// Both families' routes.
type Routes = (Vec<(Prefix<u32>, u32)>, Vec<(Prefix<u128>, u32)>);

/// Addresses per batch.
const N: usize = 1 << 16;

/// Share of each IPv4 prefix length in a 2026 full table (per mille, lengths 8..=24).
const V4_LENGTHS: [(u8, u32); 17] = [
    (8, 1),
    (9, 1),
    (10, 1),
    (11, 1),
    (12, 1),
    (13, 1),
    (14, 2),
    (15, 3),
    (16, 13),
    (17, 8),
    (18, 13),
    (19, 25),
    (20, 44),
    (21, 50),
    (22, 109),
    (23, 103),
    (24, 625),
];

fn pick_len(rng: &mut Rng, table: &[(u8, u32)]) -> u8 {
    let total: u32 = table.iter().map(|&(_, w)| w).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for &(len, w) in table {
        if x < w {
            return len;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

fn synthetic() -> Routes {
    let mut rng = Rng::new(7);
    // Address space is allocated in blocks: prefixes cluster in 25,000 random /16s of the
    // unicast space 1.0.0.0 - 223.255.255.255, as in real tables.
    let blocks: Vec<u32> = (0..25_000)
        .map(|_| ((1 + rng.below(223)) << 24 | rng.below(1 << 8) << 16) as u32)
        .collect();
    let mut v4: Vec<(Prefix<u32>, u32)> = (0..1_000_000)
        .map(|_| {
            let block = blocks[rng.below(blocks.len() as u64) as usize];
            let addr = block | rng.below(1 << 16) as u32;
            let len = pick_len(&mut rng, &V4_LENGTHS);
            (Prefix::new(addr, len, false).expect("valid"), 0)
        })
        .collect();
    // IPv6: 20,000 /32 allocations in 2000::/3, prefixes of /29 to /48 inside them.
    let allocs: Vec<u128> = (0..20_000)
        .map(|_| u128::from(0x2000_0000 + rng.below(0x1000_0000) as u32) << 96)
        .collect();
    let mut v6: Vec<(Prefix<u128>, u32)> = (0..200_000)
        .map(|_| {
            let alloc = allocs[rng.below(allocs.len() as u64) as usize];
            let addr = alloc | u128::from(rng.below(1 << 16)) << 80;
            let len = match rng.below(10) {
                0 => 29 + rng.below(4) as u8,
                1 => 32,
                2..=3 => 33 + rng.below(15) as u8,
                _ => 48,
            };
            (Prefix::new(addr, len, false).expect("valid"), 0)
        })
        .collect();
    v4.sort_unstable_by_key(|(p, _)| (p.addr(), p.len()));
    v6.sort_unstable_by_key(|(p, _)| (p.addr(), p.len()));
    for (i, r) in v4.iter_mut().enumerate() {
        r.1 = ((i / 7) % 256) as u32;
    }
    for (i, r) in v6.iter_mut().enumerate() {
        r.1 = ((i / 7) % 256) as u32;
    }
    (v4, v6)
}

fn from_file(path: &str) -> Routes {
    let text = std::fs::read_to_string(path).expect("MESHCORE_ROUTES is readable");
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let hop = ((i / 7) % 256) as u32;
        match parse_prefix(line.split_whitespace().next().unwrap_or(""), false) {
            Ok(AnyPrefix::V4(p)) => v4.push((p, hop)),
            Ok(AnyPrefix::V6(p)) => v6.push((p, hop)),
            Err(e) => panic!("{path} line {}: {e}", i + 1),
        }
    }
    (v4, v6)
}

fn lpm(c: &mut Criterion) {
    let (r4, r6) = match std::env::var("MESHCORE_ROUTES") {
        Ok(path) => from_file(&path),
        Err(_) => synthetic(),
    };
    let mut f4 = Family::<u32>::default();
    f4.extend(&r4);
    let mut f6 = Family::<u128>::default();
    f6.extend(&r6);
    let mut rng = Rng::new(1);
    let uniform: Vec<u32> = (0..N).map(|_| rng.next_u64() as u32).collect();
    // IPv6 "hit" addresses: a random host inside a random table prefix.
    let hits6: Vec<u128> = (0..N)
        .map(|_| {
            let (p, _) = r6[rng.below(r6.len() as u64) as usize];
            p.addr()
                | (u128::from(rng.next_u64()) | u128::from(rng.next_u64()) << 64) & !net_mask(p)
        })
        .collect();
    let mut out = vec![0i64; N];

    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("ipv4 batch, uniform", |b| {
        b.iter(|| f4.lookup_many(black_box(&uniform), &mut out));
    });
    g.bench_function("ipv4 one at a time, uniform", |b| {
        b.iter(|| {
            uniform
                .iter()
                .filter(|&&a| f4.lookup(black_box(a)).is_some())
                .count()
        });
    });
    g.bench_function("ipv6 batch, hosts in table prefixes", |b| {
        b.iter(|| f6.lookup_many(black_box(&hits6), &mut out));
    });
    g.finish();

    let mut g = c.benchmark_group("update");
    let prefixes: Vec<Prefix<u32>> = r4.iter().map(|&(p, _)| p).collect();
    let mut k = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4 replace the value of a table route", |b| {
        b.iter(|| {
            k = (k + 7919) % prefixes.len();
            f4.insert(prefixes[k], (k & 255) as u32)
        });
    });
    g.bench_function("ipv4 withdraw and re-announce a table route", |b| {
        b.iter_batched(
            || {
                k = (k + 7919) % prefixes.len();
                (prefixes[k], r4[k].1)
            },
            |(p, v)| {
                f4.remove(p);
                f4.insert(p, v)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Mask of the network bits of `p`.
fn net_mask(p: Prefix<u128>) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(p.len())).unwrap_or(0)
}

criterion_group!(benches, lpm);
criterion_main!(benches);
