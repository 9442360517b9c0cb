// Counts and times in these tests are far below 2**53, so float views of them are exact, and
// the caps converted back are non-negative.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use super::*;

const MS: Nanos = 1_000_000;
const SEC: Nanos = NANOS_PER_SEC;

fn named(n: usize) -> Vec<(String, f64)> {
    (0..n).map(|i| (format!("ep{i}"), 1.0)).collect()
}

fn lb(policy: Policy, eps: &[(String, f64)], opts: Options) -> Balancer {
    Balancer::new(policy, eps, opts, 42).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

#[test]
fn hash_key_is_xxh64_seed_0() {
    assert_eq!(hash_key(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(hash_key(b"abc"), 0x44BC_2CF5_AD77_0999);
}

#[test]
fn names_parse() {
    for p in Policy::ALL {
        assert_eq!(p.name().parse::<Policy>().unwrap(), p);
    }
    let e = "least_conn".parse::<Policy>().unwrap_err();
    assert!(
        e.0.contains("least_conn") && e.0.contains("peak_ewma"),
        "{e}"
    );
    assert_eq!("draining".parse::<Health>().unwrap(), Health::Draining);
    assert!("sick".parse::<Health>().is_err());
}

#[test]
fn weighted_round_robin_exact_every_cycle() {
    let w = [1.0, 2.0, 3.0, 5.0, 7.0];
    let eps: Vec<(String, f64)> = w
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("ep{i}"), w))
        .collect();
    for seed in 0..5 {
        let mut b = Balancer::new(Policy::RoundRobin, &eps, Options::default(), seed).unwrap();
        for cycle in 0..200 {
            let mut counts = [0.0; 5];
            for _ in 0..18 {
                let i = b.pick(None, cycle * SEC).unwrap();
                b.done(i, MS, true, cycle * SEC).unwrap();
                counts[i] += 1.0;
            }
            assert_eq!(
                counts.map(|c: f64| c.to_bits()),
                w.map(f64::to_bits),
                "cycle {cycle}"
            );
        }
    }
    // Fractional weights and slow start take the EDF heap; the shares are the same.
    let eps = [("a", 0.5), ("b", 1.5)];
    let mut b = Balancer::new(Policy::RoundRobin, &eps, Options::default(), 3).unwrap();
    for _ in 0..100 {
        let mut c = [0; 2];
        for _ in 0..4 {
            c[b.pick(None, 0).unwrap()] += 1;
        }
        assert_eq!(c, [1, 3]);
    }
    // Equal weights: a plain cycle, from a seed-dependent start.
    let mut firsts = HashSet::new();
    for seed in 0..20 {
        let mut b = Balancer::new(Policy::RoundRobin, &named(4), Options::default(), seed).unwrap();
        let seq: Vec<usize> = (0..12).map(|_| b.pick(None, 0).unwrap()).collect();
        firsts.insert(seq[0]);
        for k in 4..12 {
            assert_eq!(seq[k], seq[k - 4]);
        }
        let mut one: Vec<usize> = seq[..4].to_vec();
        one.sort_unstable();
        assert_eq!(one, [0, 1, 2, 3]);
    }
    assert!(firsts.len() > 1, "the start must depend on the seed");
}

#[test]
fn weighted_random_shares() {
    let eps = vec![("a".to_string(), 1.0), ("b".to_string(), 3.0)];
    let mut b = lb(Policy::Random, &eps, Options::default());
    let mut c = [0u32; 2];
    for _ in 0..40_000 {
        let i = b.pick(None, 0).unwrap();
        b.done(i, MS, true, 0).unwrap();
        c[i] += 1;
    }
    assert!((9_400..10_600).contains(&c[0]), "{c:?}");
    // More weights, one endpoint unhealthy: shares ∝ weight over the eligible ones.
    let w = [1.0, 2.0, 3.0, 4.0, 10.0, 0.5];
    let eps: Vec<(String, f64)> = w
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("ep{i}"), w))
        .collect();
    let mut b = lb(Policy::Random, &eps, Options::default());
    b.set_health(4, Health::Unhealthy).unwrap();
    let mut c = [0.0; 6];
    let draws = 200_000.0;
    for _ in 0..200_000 {
        c[b.pick(None, 0).unwrap()] += 1.0;
    }
    assert!(close(c[4], 0.0, 0.0));
    for i in [0, 1, 2, 3, 5] {
        assert!(close(c[i] / draws, w[i] / 10.5, 0.05), "{c:?}");
    }
}

#[test]
fn least_request_prefers_idle_and_draws_distinct() {
    // Two endpoints, one loaded: distinct draws always compare both, so the idle one wins every
    // time (independent draws would pick the loaded one a quarter of the time).
    let mut b = lb(Policy::LeastRequest, &named(2), Options::default());
    let first = b.pick(None, 0).unwrap();
    for _ in 0..100 {
        let i = b.pick(None, 0).unwrap();
        assert_ne!(i, first);
        b.done(i, MS, true, 0).unwrap();
    }
    // Many endpoints: in-flight counts stay balanced (max - min <= 2 at 1000 outstanding).
    let mut b = lb(Policy::LeastRequest, &named(100), Options::default());
    for _ in 0..1000 {
        b.pick(None, 0).unwrap();
    }
    let loads: Vec<u64> = (0..100).map(|i| b.in_flight(i).unwrap()).collect();
    let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
    assert!(hi - lo <= 6, "{lo}..{hi}");
}

#[test]
fn least_request_unequal_weights_use_active_bias() {
    let eps = vec![("a".to_string(), 1.0), ("b".to_string(), 3.0)];
    // Requests that finish at once: shares follow the weights.
    let mut b = lb(Policy::LeastRequest, &eps, Options::default());
    let mut c = [0u32; 2];
    for _ in 0..4000 {
        let i = b.pick(None, 0).unwrap();
        b.done(i, MS, true, 0).unwrap();
        c[i] += 1;
    }
    assert_eq!(c, [1000, 3000]);
    // Requests that never finish: Envoy's EDF re-arms an endpoint (active + 1) / weight later,
    // so after k picks its deadline is k (k + 1) / 2w, and in-flight counts end ∝ sqrt(weight):
    // 400 / (1 + sqrt 3) = 146 on the light one.
    let mut b = lb(Policy::LeastRequest, &eps, Options::default());
    for _ in 0..400 {
        b.pick(None, 0).unwrap();
    }
    let a = b.in_flight(0).unwrap();
    assert!((143..=149).contains(&a), "{a}");
}

#[test]
fn choice_count_above_pool_scans_all() {
    let opts = Options {
        choice_count: 8,
        ..Options::default()
    };
    let mut b = lb(Policy::LeastRequest, &named(5), opts);
    for round in 0..20u64 {
        for _ in 0..5 {
            b.pick(None, 0).unwrap();
        }
        assert!((0..5).all(|i| b.in_flight(i) == Some(round + 1)));
    }
    // 3 of 20: distinct draws of more than two.
    let opts = Options {
        choice_count: 3,
        ..Options::default()
    };
    let mut b = lb(Policy::LeastRequest, &named(20), opts);
    for _ in 0..200 {
        b.pick(None, 0).unwrap();
    }
    assert!((0..20).all(|i| (6..=14).contains(&b.in_flight(i).unwrap())));
}

/// Fraction of `keys` that map to a different endpoint name in `after` than in `before`, and
/// whether every moved key left `from` or went to `to`.
fn moved(before: &mut Balancer, after: &mut Balancer, keys: u64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in 0..keys {
        let h = hash_key(&k.to_le_bytes());
        let a = before.pick(Some(h), 0).unwrap();
        let b = after.pick(Some(h), 0).unwrap();
        before.done(a, 0, true, 0).unwrap();
        after.done(b, 0, true, 0).unwrap();
        let (na, nb) = (before.name(a).unwrap(), after.name(b).unwrap());
        if na != nb {
            out.push((na.to_string(), nb.to_string()));
        }
    }
    out
}

#[test]
fn ring_hash_moves_only_the_keys_it_must() {
    let keys = 100_000u64;
    for n in [5usize, 10, 40] {
        let eps = named(n);
        let base = lb(Policy::RingHash, &eps, Options::default());
        // One of n leaves: only its keys move, about 1/n of them.
        let mut before = base.clone();
        let mut after = base.clone();
        after.set_endpoints(&eps[1..], SEC).unwrap();
        let m = moved(&mut before, &mut after, keys);
        assert!(m.iter().all(|(from, _)| from == "ep0"));
        let frac = m.len() as f64 / keys as f64;
        let ideal = 1.0 / n as f64;
        println!("ring_hash n {n}: one leaves, {frac:.4} of keys move (1/n = {ideal:.4})");
        assert!(frac > 0.5 * ideal && frac < 1.6 * ideal, "n {n}: {frac}");
        // An unrelated one joins: only keys taken by it move.
        let mut before = base.clone();
        let mut after = base.clone();
        let mut more = eps.clone();
        more.push(("new".to_string(), 1.0));
        after.set_endpoints(&more, SEC).unwrap();
        let m = moved(&mut before, &mut after, keys);
        assert!(m.iter().all(|(_, to)| to == "new"));
        let frac = m.len() as f64 / keys as f64;
        let ideal = 1.0 / (n + 1) as f64;
        println!("ring_hash n {n}: one joins, {frac:.4} move, all to it (1/(n+1) = {ideal:.4})");
        assert!(frac > 0.5 * ideal && frac < 1.6 * ideal, "n {n}: {frac}");
        // The ring has at least min_ring_size points, shared by weight.
        assert!(base.ring.len() >= 1024);
    }
}

#[test]
fn ring_lookup_accelerator_agrees_with_binary_search() {
    for n in [1usize, 3, 100, 1000] {
        let b = lb(Policy::RingHash, &named(n), Options::default());
        let mut rng = Rng::new(n as u64);
        for k in 0..20_000u64 {
            let h = match k {
                0 => 0,
                1 => u64::MAX,
                _ => rng.next_u64(),
            };
            assert_eq!(b.ring.start(h), b.ring.start_slow(h), "n {n} hash {h:#x}");
        }
        for &p in &b.ring.hashes {
            for h in [p.wrapping_sub(1), p, p.wrapping_add(1)] {
                assert_eq!(b.ring.start(h), b.ring.start_slow(h), "n {n} hash {h:#x}");
            }
        }
    }
}

#[test]
fn ring_points_follow_weights() {
    let eps = vec![
        ("a".to_string(), 1.0),
        ("b".to_string(), 2.0),
        ("c".to_string(), 5.0),
    ];
    let b = lb(Policy::RingHash, &eps, Options::default());
    let c = b.ring.counts(3);
    assert!(c.iter().sum::<usize>() >= 1024);
    assert!(close(c[1] as f64 / c[0] as f64, 2.0, 0.01), "{c:?}");
    assert!(close(c[2] as f64 / c[0] as f64, 5.0, 0.01), "{c:?}");
}

#[test]
fn maglev_moves_about_one_nth() {
    let keys = 100_000u64;
    for n in [5usize, 10, 40] {
        let eps = named(n);
        let base = lb(Policy::Maglev, &eps, Options::default());
        let mut before = base.clone();
        let mut after = base.clone();
        after.set_endpoints(&eps[1..], SEC).unwrap();
        let m = moved(&mut before, &mut after, keys);
        let frac = m.len() as f64 / keys as f64;
        let stray = m.iter().filter(|(from, _)| from != "ep0").count() as f64 / keys as f64;
        let ideal = 1.0 / n as f64;
        println!("maglev n {n}: one leaves, {frac:.4} move (1/n = {ideal:.4}), {stray:.4} between others");
        assert!(frac > 0.9 * ideal && frac < 1.3 * ideal, "n {n}: {frac}");
        // Maglev is not minimal: a few keys move between endpoints that stay.
        assert!(stray < 0.01, "n {n}: {stray}");

        let mut before = base.clone();
        let mut after = base.clone();
        let mut more = eps.clone();
        more.push(("new".to_string(), 1.0));
        after.set_endpoints(&more, SEC).unwrap();
        let m = moved(&mut before, &mut after, keys);
        let frac = m.len() as f64 / keys as f64;
        let stray = m.iter().filter(|(_, to)| to != "new").count() as f64 / keys as f64;
        let ideal = 1.0 / (n + 1) as f64;
        println!("maglev n {n}: one joins, {frac:.4} move (1/(n+1) = {ideal:.4}), {stray:.4} between others");
        assert!(frac > 0.9 * ideal && frac < 1.3 * ideal, "n {n}: {frac}");
        assert!(stray < 0.01, "n {n}: {stray}");
    }
}

#[test]
fn maglev_table_follows_weights() {
    let eps = vec![
        ("a".to_string(), 1.0),
        ("b".to_string(), 2.0),
        ("c".to_string(), 3.0),
    ];
    let b = lb(Policy::Maglev, &eps, Options::default());
    let c = b.maglev.counts(3);
    assert_eq!(c.iter().sum::<usize>(), 65_537);
    assert!(close(c[1] as f64 / c[0] as f64, 2.0, 0.01), "{c:?}");
    assert!(close(c[2] as f64 / c[0] as f64, 3.0, 0.01), "{c:?}");
    let e = Balancer::new(
        Policy::Maglev,
        &named(20),
        Options {
            table_size: 17,
            ..Options::default()
        },
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("table_size"), "{e}");
}

#[test]
fn hash_unhealthy_spills_only_its_keys() {
    for policy in [Policy::RingHash, Policy::Maglev] {
        let base = lb(policy, &named(10), Options::default());
        let mut before = base.clone();
        let mut after = base.clone();
        after.set_health(3, Health::Unhealthy).unwrap();
        let m = moved(&mut before, &mut after, 50_000);
        assert!(m.iter().all(|(from, _)| from == "ep3"), "{policy}");
        assert!((3_500..6_500).contains(&m.len()), "{policy}: {}", m.len());
    }
}

#[test]
fn bounded_loads_never_exceed_the_cap() {
    for policy in [Policy::RingHash, Policy::Maglev] {
        for factor in [100u32, 125, 150, 200] {
            let c = f64::from(factor) / 100.0;
            let n = 20usize;
            let opts = Options {
                hash_balance_factor: Some(factor),
                ..Options::default()
            };
            // The worst case: one hot key for every request, nothing finishing.
            let mut b = lb(policy, &named(n), opts.clone());
            let hot = hash_key(b"hot");
            for total in 1..=500u64 {
                b.pick(Some(hot), 0).unwrap();
                let cap = (c * total as f64 / n as f64).ceil() as u64;
                let max = (0..n).map(|i| b.in_flight(i).unwrap()).max().unwrap();
                assert!(max <= cap, "{policy} c {c}: {max} > {cap} at {total}");
            }
            // Mixed keys with completions: every pick lands at or under the cap.
            let mut b = lb(policy, &named(n), opts);
            let mut rng = Rng::new(9);
            let mut open: Vec<usize> = Vec::new();
            for _ in 0..20_000 {
                if !open.is_empty() && rng.below(2) == 0 {
                    let k = rng.below(open.len() as u64) as usize;
                    b.done(open.swap_remove(k), MS, true, 0).unwrap();
                } else {
                    let key = hash_key(&rng.below(8).to_le_bytes()); // few hot keys
                    let i = b.pick(Some(key), 0).unwrap();
                    open.push(i);
                    let cap = (c * open.len() as f64 / n as f64).ceil() as u64;
                    assert!(b.in_flight(i).unwrap() <= cap);
                }
            }
        }
    }
}

#[test]
fn p2c_never_picks_unhealthy_unless_panic() {
    for policy in Policy::ALL {
        let mut b = lb(policy, &named(10), Options::default());
        for i in 0..4 {
            b.set_health(i, Health::Unhealthy).unwrap();
        }
        b.set_health(4, Health::Draining).unwrap();
        // 5 healthy of 9 non-draining: 55 %, no panic.
        assert!(!b.in_panic());
        let mut rng = Rng::new(1);
        for t in 0..5_000 {
            let i = b.pick(Some(rng.next_u64()), t).unwrap();
            assert!(i >= 5, "{policy} picked {i}");
            b.done(i, MS, t % 7 != 0, t).unwrap();
        }
        // One more unhealthy: 4 of 9 = 44 % < 50 %, panic: all non-draining share the load.
        b.set_health(5, Health::Unhealthy).unwrap();
        assert!(b.in_panic());
        let mut seen = [0u32; 10];
        for t in 0..5_000 {
            let i = b.pick(Some(rng.next_u64()), t).unwrap();
            seen[i] += 1;
            b.done(i, MS, true, t).unwrap();
        }
        assert_eq!(seen[4], 0, "{policy}: draining picked in panic");
        assert!(seen[..4].iter().all(|&s| s > 0), "{policy}: {seen:?}");
    }
}

#[test]
fn no_endpoint_errors() {
    let none: [(&str, f64); 0] = [];
    let mut b = Balancer::new(Policy::RoundRobin, &none, Options::default(), 0).unwrap();
    assert!(matches!(b.pick(None, 0), Err(BalanceError::NoEndpoint(m)) if m.contains("empty")));
    let opts = Options {
        panic_threshold: 0.0,
        ..Options::default()
    };
    let mut b = lb(Policy::PeakEwma, &named(2), opts);
    b.set_health(0, Health::Unhealthy).unwrap();
    b.set_health(1, Health::Unhealthy).unwrap();
    assert!(!b.in_panic());
    let e = b.pick(None, 0).unwrap_err();
    assert!(e.to_string().contains("panic"), "{e}");
    b.set_health(0, Health::Draining).unwrap();
    b.set_health(1, Health::Draining).unwrap();
    let e = b.pick(None, 0).unwrap_err();
    assert!(e.to_string().contains("draining"), "{e}");
    assert_eq!(b.done(2, 0, true, 0), Err(BalanceError::UnknownEndpoint(2)));
    assert_eq!(
        b.set_health(9, Health::Healthy),
        Err(BalanceError::UnknownEndpoint(9))
    );
}

#[test]
fn draining_finishes_in_flight() {
    let mut b = lb(Policy::LeastRequest, &named(3), Options::default());
    let mut picks = Vec::new();
    for _ in 0..30 {
        picks.push(b.pick(None, 0).unwrap());
    }
    b.set_health(0, Health::Draining).unwrap();
    let on0 = picks.iter().filter(|&&i| i == 0).count() as u64;
    assert!(on0 > 0);
    assert_eq!(b.in_flight(0), Some(on0));
    for _ in 0..100 {
        assert_ne!(b.pick(None, 0).unwrap(), 0);
    }
    for &i in picks.iter().filter(|&&i| i == 0) {
        b.done(i, 5 * MS, true, 0).unwrap();
    }
    assert_eq!(b.in_flight(0), Some(0));
    // Only peak EWMA records latencies.
    assert!(b.endpoint(0, 0).unwrap().ewma.is_none());
    // Extra completions never go below zero.
    b.done(0, MS, true, 0).unwrap();
    assert_eq!(b.in_flight(0), Some(0));
}

#[test]
fn bad_parameters_are_refused() {
    let bad_weights: [(&str, f64); 4] = [
        ("a", -1.0),
        ("a", 0.0),
        ("a", f64::NAN),
        ("a", f64::INFINITY),
    ];
    for w in bad_weights {
        let e = Balancer::new(Policy::Random, &[w], Options::default(), 0).unwrap_err();
        assert!(
            matches!(&e, BalanceError::Param(p) if p.0.contains("weight of endpoint \"a\"")),
            "{e}"
        );
    }
    let dup = [("a", 1.0), ("a", 2.0)];
    let e = Balancer::new(Policy::Random, &dup, Options::default(), 0).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let cases: Vec<(Policy, Options, &str)> = vec![
        (
            Policy::LeastRequest,
            Options {
                choice_count: 1,
                ..Options::default()
            },
            "choice_count",
        ),
        (
            Policy::LeastRequest,
            Options {
                active_request_bias: -1.0,
                ..Options::default()
            },
            "active_request_bias",
        ),
        (
            Policy::PeakEwma,
            Options {
                decay: 0,
                ..Options::default()
            },
            "decay",
        ),
        (
            Policy::PeakEwma,
            Options {
                default_rtt: 0,
                ..Options::default()
            },
            "default_rtt",
        ),
        (
            Policy::RingHash,
            Options {
                min_ring_size: 0,
                ..Options::default()
            },
            "min_ring_size",
        ),
        (
            Policy::RingHash,
            Options {
                min_ring_size: 4096,
                max_ring_size: 1024,
                ..Options::default()
            },
            "max_ring_size",
        ),
        (
            Policy::Maglev,
            Options {
                table_size: 65_536,
                ..Options::default()
            },
            "table_size",
        ),
        (
            Policy::Maglev,
            Options {
                hash_balance_factor: Some(99),
                ..Options::default()
            },
            "hash_balance_factor",
        ),
        (
            Policy::RoundRobin,
            Options {
                hash_balance_factor: Some(150),
                ..Options::default()
            },
            "hash_balance_factor",
        ),
        (
            Policy::RoundRobin,
            Options {
                slow_start_aggression: 0.0,
                ..Options::default()
            },
            "slow_start_aggression",
        ),
        (
            Policy::RoundRobin,
            Options {
                slow_start_min_weight_percent: 101.0,
                ..Options::default()
            },
            "slow_start_min_weight_percent",
        ),
        (
            Policy::RoundRobin,
            Options {
                panic_threshold: f64::NAN,
                ..Options::default()
            },
            "panic_threshold",
        ),
    ];
    for (policy, opts, what) in cases {
        let e = Balancer::new(policy, &named(2), opts, 0).unwrap_err();
        assert!(e.to_string().starts_with(what), "{what}: {e}");
    }
    // A refused update leaves the balancer as it was.
    let mut b = lb(Policy::RoundRobin, &named(2), Options::default());
    assert!(b.set_endpoints(&[("x", -2.0)], SEC).is_err());
    assert_eq!(b.len(), 2);
}

#[test]
fn options_set_by_name() {
    let mut o = Options::default();
    o.set("decay", 2.5).unwrap();
    o.set("default_rtt", 0.01).unwrap();
    o.set("choice_count", 3.0).unwrap();
    o.set("hash_balance_factor", 150.0).unwrap();
    o.set("panic_threshold", 0.0).unwrap();
    assert_eq!(
        (o.decay, o.default_rtt, o.choice_count),
        (2_500 * MS, 10 * MS, 3)
    );
    assert_eq!(o.hash_balance_factor, Some(150));
    assert!(o.validate(Policy::RingHash).is_ok());
    let e = o.set("choice_count", 2.5).unwrap_err();
    assert!(
        e.0.starts_with("choice_count must be a whole number"),
        "{e}"
    );
    let e = o.set("decay", -1.0).unwrap_err();
    assert!(e.0.starts_with("decay"), "{e}");
    let e = o.set("choices", 2.0).unwrap_err();
    assert!(
        e.0.contains("unknown option \"choices\"") && e.0.contains("choice_count"),
        "{e}"
    );
    for key in Options::KEYS {
        let mut o = Options::default();
        o.set(key, 1.0).unwrap();
    }
}

#[test]
fn state_survives_set_updates() {
    for policy in Policy::ALL {
        let mut b = lb(policy, &named(4), Options::default());
        let mut rng = Rng::new(3);
        for _ in 0..40 {
            b.pick(Some(rng.next_u64()), 0).unwrap();
        }
        for i in 0..4 {
            // One sample per endpoint on top of whatever it holds.
            if b.in_flight(i).unwrap() > 0 {
                b.done(i, (10 + i as u64) * MS, true, SEC).unwrap();
            }
        }
        b.set_health(2, Health::Unhealthy).unwrap();
        let before: Vec<(String, u64, Option<f64>, Health)> = b
            .endpoints(2 * SEC)
            .map(|e| (e.name.to_string(), e.in_flight, e.ewma, e.health))
            .collect();
        assert_eq!(
            before.iter().any(|e| e.2.is_some()),
            policy == Policy::PeakEwma,
            "{policy}"
        );
        // Reorder, drop ep1, add two, reweight ep3.
        let next = [
            ("new1", 1.0),
            ("ep3", 2.0),
            ("ep0", 1.0),
            ("ep2", 1.0),
            ("new2", 1.0),
        ];
        b.set_endpoints(&next, 2 * SEC).unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(b.index_of("ep1"), None);
        for (name, in_flight, ewma, health) in &before {
            let Some(i) = b.index_of(name) else {
                assert_eq!(name, "ep1");
                continue;
            };
            let e = b.endpoint(i, 2 * SEC).unwrap();
            assert_eq!(
                (e.in_flight, e.ewma, e.health),
                (*in_flight, *ewma, *health)
            );
            assert_eq!(e.joined, None);
        }
        assert!(close(b.endpoint(1, 0).unwrap().weight, 2.0, 0.0));
        let n1 = b.endpoint(0, 2 * SEC).unwrap();
        assert_eq!(
            (n1.in_flight, n1.ewma, n1.health, n1.joined),
            (0, None, Health::Healthy, Some(2 * SEC))
        );
        // The balancer still works and in-flight accounting stays exact.
        for t in 0..100 {
            let i = b.pick(Some(rng.next_u64()), 3 * SEC + t).unwrap();
            assert_ne!(b.health(i), Some(Health::Unhealthy));
        }
    }
}

#[test]
fn seeded_runs_reproduce() {
    let run = |policy: Policy, seed: u64| -> Vec<usize> {
        let eps: Vec<(String, f64)> = (0..30)
            .map(|i| (format!("ep{i}"), 1.0 + (i % 3) as f64))
            .collect();
        let opts = Options {
            slow_start_window: 5 * SEC,
            hash_balance_factor: policy.is_hash().then_some(150),
            ..Options::default()
        };
        let mut b = Balancer::new(policy, &eps, opts, seed).unwrap();
        let mut rng = Rng::new(seed ^ 0x55);
        let mut open = Vec::new();
        let mut out = Vec::new();
        for t in 0..3_000u64 {
            let now = t * MS;
            if t == 1_000 {
                let mut more = eps.clone();
                more.push(("late".to_string(), 2.0));
                b.set_endpoints(&more, now).unwrap();
            }
            if !open.is_empty() && rng.below(3) == 0 {
                let i = open.swap_remove(rng.below(open.len() as u64) as usize);
                b.done(i, rng.below(50) * MS, rng.below(10) != 0, now)
                    .unwrap();
            } else {
                let i = b.pick(None, now).unwrap();
                open.push(i);
                out.push(i);
            }
        }
        out
    };
    for policy in Policy::ALL {
        assert_eq!(run(policy, 7), run(policy, 7), "{policy}");
        assert_ne!(run(policy, 7), run(policy, 8), "{policy}");
    }
}

#[test]
fn slow_start_follows_the_formula() {
    let window = 10 * SEC;
    for (aggression, min_pct) in [(1.0, 10.0), (2.0, 10.0), (0.5, 0.0), (1.5, 40.0)] {
        let opts = Options {
            slow_start_window: window,
            slow_start_aggression: aggression,
            slow_start_min_weight_percent: min_pct,
            ..Options::default()
        };
        let mut b = lb(Policy::LeastRequest, &named(2), opts);
        let t0 = 100 * SEC;
        let eps = [("ep0", 1.0), ("ep1", 1.0), ("late", 4.0)];
        b.set_endpoints(&eps, t0).unwrap();
        for t in [
            0,
            MS / 2,
            MS,
            SEC,
            2_500 * MS,
            5 * SEC,
            9_999 * MS,
            10 * SEC,
            60 * SEC,
        ] {
            let info = b.endpoint(2, t0 + t).unwrap();
            let x = (t.max(MS) as f64 / window as f64).min(1.0);
            let want = 4.0 * (min_pct / 100.0).max(x.powf(1.0 / aggression)).min(1.0);
            assert!(
                close(info.effective_weight, want, 1e-12),
                "t {t}: {} vs {want}",
                info.effective_weight
            );
            // Endpoints from `new` are warm from the start.
            assert!(close(
                b.endpoint(0, t0 + t).unwrap().effective_weight,
                1.0,
                0.0
            ));
        }
    }
}

#[test]
fn slow_start_ramps_traffic() {
    // A new endpoint of equal weight in a warm pool gets ∝ its factor: about 10 % of a full
    // share at the start, a full share after the window.
    for policy in [Policy::RoundRobin, Policy::Random, Policy::LeastRequest] {
        let opts = Options {
            slow_start_window: 10 * SEC,
            ..Options::default()
        };
        let mut b = lb(policy, &named(4), opts);
        let mut all = named(4);
        all.push(("late".to_string(), 1.0));
        b.set_endpoints(&all, 0).unwrap();
        let share = |b: &mut Balancer, now: Nanos| {
            let mut c = 0;
            for _ in 0..20_000 {
                let i = b.pick(None, now).unwrap();
                b.done(i, MS, true, now).unwrap();
                c += usize::from(i == 4);
            }
            c as f64 / 20_000.0
        };
        let early = share(&mut b, 500 * MS); // factor 0.1: 0.1 / 4.1
        let mid = share(&mut b, 5 * SEC); // factor 0.5: 0.5 / 4.5
        let late = share(&mut b, 20 * SEC); // 1 / 5
        assert!(close(early, 0.1 / 4.1, 0.15), "{policy} early {early}");
        assert!(close(mid, 0.5 / 4.5, 0.1), "{policy} mid {mid}");
        assert!(close(late, 0.2, 0.05), "{policy} late {late}");
    }
}

#[test]
fn peak_ewma_math() {
    let o = Options::default();
    let tau = o.decay;
    let mut ep = Endpoint::new(1.0, None);
    assert!(close(ep.estimate(0, &o), 30e6, 0.0));
    ep.observe(100.0, false, 0, tau);
    assert!(close(ep.cost, 100.0, 0.0));
    ep.observe(50.0, false, tau, tau);
    let e = (-1.0f64).exp();
    assert!(close(ep.cost, 100.0 * e + 50.0 * (1.0 - e), 1e-12));
    // Peak: a larger sample is taken at once.
    ep.observe(1000.0, true, tau + 1, tau);
    assert!(close(ep.fail, FAIL_ALPHA, 0.0));
    assert!(close(ep.cost, 1000.0, 0.0));
    // Reads decay.
    assert!(close(ep.estimate(2 * tau + 1, &o), 1000.0 * e, 1e-12));
}

/// Sequential requests: each request is picked and finishes after its endpoint's latency.
fn serve(b: &mut Balancer, latency: impl Fn(usize) -> (Nanos, bool), requests: u64) -> Vec<u64> {
    let mut counts = vec![0; b.len()];
    let mut now = 0;
    let mut open: Vec<(Nanos, usize, Nanos)> = Vec::new();
    for _ in 0..requests {
        now += MS;
        // Finish what is due.
        open.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
        while open.last().is_some_and(|o| o.0 <= now) {
            let (end, i, start) = open.pop().unwrap();
            let ok = latency(i).1;
            b.done(i, end - start, ok, end).unwrap();
        }
        let i = b.pick(None, now).unwrap();
        counts[i] += 1;
        open.push((now + latency(i).0, i, now));
    }
    counts
}

#[test]
fn peak_ewma_avoids_slow_and_failing_endpoints() {
    // One endpoint at 2 s, nine at 100 ms, a request every ms.
    let mut b = lb(Policy::PeakEwma, &named(10), Options::default());
    let c = serve(
        &mut b,
        |i| (if i == 0 { 2 * SEC } else { 100 * MS }, true),
        20_000,
    );
    assert!(c[0] < 200, "slow endpoint got {c:?}");
    let peak_slow = c[0];
    // One endpoint fails in 1 ms: penalised, it gets well under its 10 % share...
    let mut b = lb(Policy::PeakEwma, &named(10), Options::default());
    let c = serve(
        &mut b,
        |i| {
            if i == 0 {
                (MS, false)
            } else {
                (100 * MS, true)
            }
        },
        20_000,
    );
    assert!(c[0] < 500, "failing endpoint got {c:?}");
    println!("failing endpoint: {c:?}");
    // ...whereas counted as successes, the same fast answers would win every comparison it is
    // drawn into (with two choices of ten, a 2/10 share instead of 1/10).
    let mut b = lb(Policy::PeakEwma, &named(10), Options::default());
    let c = serve(
        &mut b,
        |i| if i == 0 { (MS, true) } else { (100 * MS, true) },
        20_000,
    );
    assert!(c[0] > 3_500, "fast endpoint got {c:?}");
    // Least request sees only in-flight counts, so the slow endpoint keeps more traffic.
    let mut b = lb(Policy::LeastRequest, &named(10), Options::default());
    let c = serve(
        &mut b,
        |i| (if i == 0 { 2 * SEC } else { 100 * MS }, true),
        20_000,
    );
    assert!(c[0] > peak_slow, "{c:?} vs {peak_slow}");
    println!(
        "slow endpoint: peak_ewma {peak_slow}, least_request {}",
        c[0]
    );
}

#[test]
fn failure_never_lowers_the_estimate() {
    let mut b = lb(Policy::PeakEwma, &named(1), Options::default());
    let i = b.pick(None, 0).unwrap();
    b.done(i, 3 * SEC, true, 3 * SEC).unwrap();
    let before = b.endpoint(0, 3 * SEC + MS).unwrap().ewma.unwrap();
    b.pick(None, 3 * SEC).unwrap();
    b.done(0, MS, false, 3 * SEC + MS).unwrap();
    let info = b.endpoint(0, 3 * SEC + MS).unwrap();
    let after = info.ewma.unwrap();
    assert!(after >= before, "{after} < {before}");
    assert!(
        close(info.failure_ratio, FAIL_ALPHA, 1e-9),
        "{}",
        info.failure_ratio
    );
}

/// Timing loop, not a test of speed: `cargo test --release -p meshcore-core --lib
/// balance::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, run by hand in release mode"]
fn timing() {
    use std::time::Instant;
    for (n, weighted) in [(10usize, false), (100, false), (1000, false), (1000, true)] {
        for policy in Policy::ALL {
            let eps: Vec<(String, f64)> = (0..n)
                .map(|i| {
                    let w = if weighted { 1.0 + (i % 3) as f64 } else { 1.0 };
                    (format!("10.0.{}.{}:8080", i / 256, i % 256), w)
                })
                .collect();
            let t = Instant::now();
            let mut b = Balancer::new(policy, &eps, Options::default(), 1).unwrap();
            let build = t.elapsed();
            let iters = 2_000_000u64;
            let mut now = 0;
            let t = Instant::now();
            let mut h = 0x1234_5678u64;
            for _ in 0..iters {
                now += 1_000;
                h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = b.pick(Some(h), now).unwrap();
                b.done(i, 50_000, true, now).unwrap();
            }
            let ns = t.elapsed().as_nanos() as f64 / iters as f64;
            println!(
                "n {n:5} weighted {weighted:5} {policy:14} pick+done {ns:6.1} ns  build {build:?}"
            );
        }
    }
}
