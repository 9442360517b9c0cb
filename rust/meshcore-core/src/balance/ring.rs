//! Ketama-style hash ring (Envoy `RING_HASH`): every endpoint owns `ceil(weight × scale)` points,
//! point j of endpoint `name` at `xxh64("{name}_{j}", 0)`; a key goes to the owner of the first
//! point at or after its hash, wrapping around.
//!
//! The scale (points per unit of weight) is chosen once, Envoy's way but aiming at twice
//! `min_ring_size` points, and then kept across updates while the ring stays within
//! `[min_ring_size, max_ring_size]`. Keeping it is what makes updates minimally disruptive: an
//! endpoint that stays keeps exactly its points, so only keys of a removed endpoint move, and only
//! keys taken by an added one. (Rescaling on every update, as a fixed-size ring must, moves keys
//! between endpoints that both stay: envoy#22558.) The headroom lets the pool lose half its
//! weight before the scale has to change.

use std::io::Write;

use xxhash_rust::xxh64::xxh64;

#[derive(Debug, Clone, Default)]
pub(super) struct Ring {
    pub(super) hashes: Vec<u64>,
    owners: Vec<u32>,
    scale: f64,
    /// Lookup accelerator: `first[b]` is the first point whose hash is ≥ `b << shift`, for the
    /// 2^k buckets of the top k bits (about one point per bucket), and `first[2^k]` = len.
    first: Vec<u32>,
    shift: u32,
}

/// `Σ ceil(wᵢ × scale)` (each endpoint at least one point).
#[allow(clippy::cast_sign_loss)] // weights and scale are positive
fn points(w: f64, scale: f64) -> u64 {
    ((w * scale).ceil() as u64).max(1)
}

impl Ring {
    /// The ring over `names` (distinct) with `weights` (positive), reusing `prev`'s scale when
    /// the ring it gives stays within the size bounds.
    #[allow(clippy::cast_precision_loss)] // ring sizes are far below 2**53
    pub(super) fn build(
        names: &[String],
        weights: &[f64],
        prev: Option<&Ring>,
        min_size: u64,
        max_size: u64,
    ) -> Ring {
        if names.is_empty() {
            return Ring {
                scale: prev.map_or(0.0, |r| r.scale),
                ..Ring::default()
            };
        }
        let size = |scale: f64| weights.iter().map(|&w| points(w, scale)).sum::<u64>();
        let scale = match prev {
            Some(r) if r.scale > 0.0 && (min_size..=max_size).contains(&size(r.scale)) => r.scale,
            _ => {
                // Envoy: the lightest endpoint gets ceil(its share × target) points and the rest
                // in proportion, the ring capped at max_size.
                let total: f64 = weights.iter().sum();
                let lightest = weights.iter().copied().fold(f64::INFINITY, f64::min) / total;
                let target = min_size.saturating_mul(2).min(max_size) as f64;
                let ring = ((lightest * target).ceil() / lightest).min(max_size as f64);
                ring / total
            }
        };
        let mut pts: Vec<(u64, &str, u32)> = Vec::with_capacity(size(scale) as usize);
        let mut buf = Vec::with_capacity(64);
        for (idx, (name, &w)) in names.iter().zip(weights).enumerate() {
            for j in 0..points(w, scale) {
                buf.clear();
                // Writing to a Vec cannot fail.
                let _ = write!(buf, "{name}_{j}");
                pts.push((xxh64(&buf, 0), name, idx as u32));
            }
        }
        // Ties (64-bit collisions) go by name, so the ring does not depend on endpoint order.
        pts.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let hashes: Vec<u64> = pts.iter().map(|p| p.0).collect();
        let k = (usize::BITS - hashes.len().leading_zeros()).clamp(1, 24);
        let shift = 64 - k;
        let mut first = Vec::with_capacity((1 << k) + 1);
        let mut p = 0;
        for b in 0..1u64 << k {
            while p < hashes.len() && hashes[p] < b << shift {
                p += 1;
            }
            first.push(p as u32);
        }
        first.push(hashes.len() as u32);
        Ring {
            owners: pts.iter().map(|p| p.2).collect(),
            hashes,
            scale,
            first,
            shift,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Position of the first point at or after `hash` (wrapping); `len()` must be > 0.
    pub(super) fn start(&self, hash: u64) -> usize {
        // The answer lies in the key's bucket or is the first point of the next non-empty one,
        // which is where `first[b + 1]` points.
        let b = (hash >> self.shift) as usize;
        let (mut p, end) = (self.first[b] as usize, self.first[b + 1] as usize);
        while p < end && self.hashes[p] < hash {
            p += 1;
        }
        if p == self.hashes.len() {
            0
        } else {
            p
        }
    }

    #[cfg(test)]
    pub(super) fn start_slow(&self, hash: u64) -> usize {
        let p = self.hashes.partition_point(|&h| h < hash);
        if p == self.hashes.len() {
            0
        } else {
            p
        }
    }

    pub(super) fn owner(&self, pos: usize) -> usize {
        self.owners[pos] as usize
    }

    /// Points per endpoint, by endpoint index (for tests and introspection).
    #[cfg(test)]
    pub(super) fn counts(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &o in &self.owners {
            c[o as usize] += 1;
        }
        c
    }
}
