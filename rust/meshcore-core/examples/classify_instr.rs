//! Lookup cost of the tuple-space classifier on ClassBench sets, for instruction counting and
//! interleaved timing.
//!
//! `cargo run --release -p meshcore-core --example classify_instr DIR PASSES SET...`
//! builds each set, checks the answers against `.firstmatch` (trace and a shuffled copy with
//! one line per distinct header), then classifies the trace `PASSES` times and the shuffled
//! copy `PASSES` times. Under `valgrind --tool=cachegrind`, the difference between two runs
//! with different `PASSES` divided by the packets classified is the instruction count per
//! packet, free of parsing and building. With `TIME=1`, it prints the best rate over the passes
//! instead (the sets are timed round-robin, so load on the machine hits them alike).
#![allow(clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::classify::classbench::{parse_filters, parse_trace};
use meshcore_core::classify::tuple::TupleMerge;
use meshcore_core::classify::Key;
use meshcore_core::rand::Rng;
use std::collections::HashSet;
use std::time::Instant;

struct Set {
    name: String,
    t: TupleMerge<u32>,
    trace: Vec<Key<u32>>,
    shuffled: Vec<Key<u32>>,
}

fn load(dir: &str, name: &str) -> Set {
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).expect(f);
    let rules = parse_filters(&read(name)).unwrap_or_else(|e| panic!("{e}"));
    let trace_name = if std::path::Path::new(&format!("{dir}/{name}_trace")).exists() {
        format!("{name}_trace")
    } else {
        format!("generated/{name}_trace")
    };
    let trace = parse_trace(&read(&trace_name)).unwrap_or_else(|e| panic!("{e}"));
    let answers: Vec<i64> = read(&format!("{trace_name}.firstmatch"))
        .lines()
        .map(|l| l.trim().parse().expect("integer"))
        .collect();
    let t = TupleMerge::build(rules);
    let mut out = vec![0i64; trace.len()];
    t.classify_batch(&trace, &mut out);
    assert_eq!(out, answers, "{name}: trace answers");
    let mut seen = HashSet::new();
    let mut shuffled = Vec::new();
    let mut want = Vec::new();
    for (k, a) in trace.iter().zip(&answers) {
        if seen.insert(*k) {
            shuffled.push(*k);
            want.push(*a);
        }
    }
    let mut rng = Rng::new(7);
    for i in (1..shuffled.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        shuffled.swap(i, j);
        want.swap(i, j);
    }
    let mut out = vec![0i64; shuffled.len()];
    t.classify_batch(&shuffled, &mut out);
    assert_eq!(out, want, "{name}: shuffled answers");
    Set {
        name: name.to_string(),
        t,
        trace,
        shuffled,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("DIR PASSES SET...");
    let passes: usize = args.next().expect("PASSES").parse().expect("number");
    let sets: Vec<Set> = args.map(|s| load(&dir, &s)).collect();
    let time = std::env::var("TIME").is_ok_and(|v| v == "1");
    // ONLY=trace or ONLY=shuffled classifies just that copy.
    let only = std::env::var("ONLY").unwrap_or_default();
    let (do_trace, do_shuf) = (only != "shuffled", only != "trace");
    let mut best = vec![(f64::MAX, f64::MAX); sets.len()];
    let mut out = vec![0i64; sets.iter().map(|s| s.trace.len()).max().unwrap_or(0)];
    for _ in 0..passes {
        for (s, b) in sets.iter().zip(best.iter_mut()) {
            if do_trace {
                let t0 = Instant::now();
                s.t.classify_batch(&s.trace, &mut out[..s.trace.len()]);
                b.0 = b.0.min(t0.elapsed().as_secs_f64());
            }
            if do_shuf {
                let t0 = Instant::now();
                s.t.classify_batch(&s.shuffled, &mut out[..s.shuffled.len()]);
                b.1 = b.1.min(t0.elapsed().as_secs_f64());
            }
        }
    }
    for (s, b) in sets.iter().zip(&best) {
        if time {
            println!(
                "{:10} trace {:6.2} Mpps  shuffled {:6.2} Mpps  ({} + {} lines, {:.1} B/rule)",
                s.name,
                s.trace.len() as f64 / b.0 / 1e6,
                s.shuffled.len() as f64 / b.1 / 1e6,
                s.trace.len(),
                s.shuffled.len(),
                s.t.memory() as f64 / s.t.len() as f64,
            );
        } else {
            println!(
                "{:10} packets/pass trace {} shuffled {}",
                s.name,
                s.trace.len(),
                s.shuffled.len()
            );
        }
    }
}
