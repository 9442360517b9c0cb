//! Tuple-space classifier on ClassBench sets: agreement with the oracle, lookup rate, memory
//! and single-rule update time, per configuration.
//! `cargo run --release -p meshcore-core --example classify_speed DIR SET...` where DIR holds
//! `SET`, `SET_trace` and `SET_trace.firstmatch` (e.g. `acl1_10k`).
#![allow(clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::classify::classbench::{parse_filters, parse_trace};
use meshcore_core::classify::tuple::{Config, TupleMerge};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("DIR SET...");
    // CONFIGS=quantum:limit[:cap],... compares tunings; the default is the IPv4 default.
    let configs: Vec<Config> = std::env::var("CONFIGS")
        .unwrap_or_else(|_| {
            let c = Config::for_width(32);
            format!("{}:{}:{}", c.quantum, c.limit, c.cap)
        })
        .split(',')
        .map(|c| {
            let f: Vec<u8> = c.split(':').map(|x| x.parse().expect("number")).collect();
            Config {
                quantum: f[0],
                limit: f[1].into(),
                cap: f.get(2).copied().unwrap_or(128),
            }
        })
        .collect();
    for set in args {
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).expect(name);
        let rules = parse_filters(&read(&set)).unwrap_or_else(|e| panic!("{e}"));
        let trace_name = if std::path::Path::new(&format!("{dir}/{set}_trace")).exists() {
            format!("{set}_trace")
        } else {
            format!("generated/{set}_trace")
        };
        let trace = parse_trace(&read(&trace_name)).unwrap_or_else(|e| panic!("{e}"));
        let answers: Vec<i64> = read(&format!("{trace_name}.firstmatch"))
            .lines()
            .map(|l| l.trim().parse().expect("integer"))
            .collect();
        for &config in &configs {
            let t0 = Instant::now();
            let t = TupleMerge::build_with(rules.clone(), config);
            let build = t0.elapsed();
            let mut out = vec![0i64; trace.len()];
            t.classify_batch(&trace, &mut out);
            let wrong = out.iter().zip(&answers).filter(|(a, b)| a != b).count();
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t0 = Instant::now();
                t.classify_batch(&trace, &mut out);
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let mut single = f64::MAX;
            for _ in 0..5 {
                let t0 = Instant::now();
                for (k, o) in trace.iter().zip(out.iter_mut()) {
                    *o = t.classify(k).map_or(-1, i64::from);
                }
                single = single.min(t0.elapsed().as_secs_f64());
            }
            println!(
                "   one at a time {:.2} Mpps",
                trace.len() as f64 / single / 1e6
            );
            let (tables, buckets, largest) = t.stats();
            // Single-rule updates: remove and re-add rules.
            let mut u = t.clone();
            let n = 2000.min(rules.len());
            let t0 = Instant::now();
            for r in rules.iter().take(n) {
                u.remove(r.id);
                u.insert(*r);
            }
            let upd = t0.elapsed().as_secs_f64() / (2 * n) as f64;
            println!(
                "{set:9} q{:<2} l{:<3} c{:<3} rules {:5} wrong {wrong} | {:6.2} Mpps | tables {tables:4} largest {largest:3} buckets {buckets:5} | {:5.1} B/rule | build {:6.1} ms | update {:5.2} us",
                config.quantum,
                config.limit,
                config.cap,
                rules.len(),
                trace.len() as f64 / best / 1e6,
                t.memory() as f64 / rules.len() as f64,
                build.as_secs_f64() * 1e3,
                upd * 1e6,
            );
        }
    }
}
