//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4; Envoy `MAGLEV`).
//!
//! A lookup table of prime size M. Endpoint `name` has offset = xxh64(name, 0) mod M and
//! skip = xxh64(name, 1) mod (M − 1) + 1, so its preference list (offset + j·skip) mod M is a
//! permutation of the slots (M prime). Endpoints take turns, in name order, each claiming its next
//! unclaimed preferred slot until the table is full. Weights as in Envoy: with wᵢ normalised by the
//! largest weight, endpoint i claims a slot in round k only while k·wᵢ ≥ (slots claimed so far),
//! so table shares are proportional to weight (every endpoint claims at least one slot, in round
//! 1). A lookup is `table[hash mod M]`, O(1). Disruption on updates is small but not minimal.

use xxhash_rust::xxh64::xxh64;

/// Envoy's upper bound for `table_size`.
pub(super) const MAX_TABLE_SIZE: u64 = 5_000_011;

pub(super) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[derive(Debug, Clone, Default)]
pub(super) struct Maglev {
    table: Vec<u32>,
}

struct Build {
    idx: u32,
    pos: u64,
    skip: u64,
    weight: f64,
    target: f64,
}

impl Maglev {
    /// The table of size `m` (prime, ≥ `names.len()`) over `names` (distinct) with `weights`
    /// (positive).
    #[allow(clippy::cast_precision_loss)] // round numbers are below the table size
    pub(super) fn build(names: &[String], weights: &[f64], m: u64) -> Maglev {
        if names.is_empty() {
            return Maglev::default();
        }
        let max_w = weights.iter().copied().fold(0.0, f64::max);
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_unstable_by(|&a, &b| names[a].cmp(&names[b]));
        let mut entries: Vec<Build> = order
            .into_iter()
            .map(|i| {
                let key = names[i].as_bytes();
                Build {
                    idx: i as u32,
                    pos: xxh64(key, 0) % m,
                    skip: xxh64(key, 1) % (m - 1) + 1,
                    weight: weights[i] / max_w,
                    target: 0.0,
                }
            })
            .collect();
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < m {
            for e in &mut entries {
                if filled == m {
                    break;
                }
                if (round as f64) * e.weight < e.target {
                    continue;
                }
                e.target += 1.0;
                while table[e.pos as usize] != u32::MAX {
                    e.pos += e.skip;
                    if e.pos >= m {
                        e.pos -= m;
                    }
                }
                table[e.pos as usize] = e.idx;
                filled += 1;
            }
            round += 1;
        }
        Maglev { table }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn start(&self, hash: u64) -> usize {
        (hash % self.table.len() as u64) as usize
    }

    pub(super) fn owner(&self, pos: usize) -> usize {
        self.table[pos] as usize
    }

    #[cfg(test)]
    pub(super) fn counts(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &o in &self.table {
            c[o as usize] += 1;
        }
        c
    }
}
