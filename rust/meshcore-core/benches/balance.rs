//! Criterion benchmark of the balancer core alone (no Python): one `pick` + `done` pair per
//! iteration for every policy at 10 and 1000 endpoints (weights 1..3 at 1000, to exercise the
//! weighted paths), and the maglev table build for 1000 endpoints.
//!
//! `cargo bench -p meshcore-core --bench balance`.
use criterion::{criterion_group, criterion_main, Criterion};
use meshcore_core::balance::{Balancer, Options, Policy};
use std::hint::black_box;

fn endpoints(n: usize, weighted: bool) -> Vec<(String, f64)> {
    (0..n)
        .map(|i| {
            let w = if weighted {
                [1.0, 2.0, 3.0][i % 3]
            } else {
                1.0
            };
            (format!("10.0.{}.{}:8080", i / 256, i % 256), w)
        })
        .collect()
}

fn pick_done(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_done");
    for (n, weighted) in [(10, false), (1000, true)] {
        for policy in Policy::ALL {
            let mut b = Balancer::new(policy, &endpoints(n, weighted), Options::default(), 1)
                .expect("valid balancer");
            let (mut now, mut h) = (0u64, 0x1234_5678u64);
            g.bench_function(format!("{policy}/{n}"), |bench| {
                bench.iter(|| {
                    now += 1_000;
                    h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let i = b.pick(Some(h), now).expect("endpoint");
                    b.done(i, 50_000, true, now).expect("known endpoint");
                    black_box(i)
                });
            });
        }
    }
    g.finish();
}

fn maglev_build(c: &mut Criterion) {
    let eps = endpoints(1000, true);
    let mut g = c.benchmark_group("build");
    g.sample_size(20);
    g.bench_function("maglev/1000", |bench| {
        bench.iter(|| {
            Balancer::new(Policy::Maglev, black_box(&eps), Options::default(), 1).expect("valid")
        });
    });
    g.bench_function("ring_hash/1000", |bench| {
        bench.iter(|| {
            Balancer::new(Policy::RingHash, black_box(&eps), Options::default(), 1).expect("valid")
        });
    });
    g.finish();
}

criterion_group!(benches, pick_done, maglev_build);
criterion_main!(benches);
