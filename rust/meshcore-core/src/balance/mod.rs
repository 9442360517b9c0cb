//! Load balancing: pick an endpoint for every request, with time passed in.
//!
//! A [`Balancer`] holds a set of named endpoints (addressed by index inside; names are kept so a
//! new set can be matched against the old one), a [`Policy`], its [`Options`] and a seeded
//! [`Rng`]. The caller asks [`Balancer::pick`] for an endpoint, which counts one request in
//! flight on it, and reports the outcome with [`Balancer::done`]. Nothing here reads a clock:
//! every call that needs the time takes `now` in integer nanoseconds ([`Nanos`]).
//!
//! Policies (the picker inside the health filter):
//! - [`Policy::RoundRobin`]: earliest-deadline-first over effective weights (Envoy's weighted round
//!   robin); with constant integer weights every run of Σw picks gives each endpoint exactly w. The
//!   order among equal deadlines is a rotation drawn from the seed, so clients do not march in step.
//!   Equal weights go round a cursor, and integer weights summing to at most 16 384 replay one
//!   precomputed period of the same EDF; only slow start and other weights pay for the heap.
//! - [`Policy::Random`]: weighted random, O(1) through an alias table (slow start by rejection).
//! - [`Policy::LeastRequest`]: with equal weights, power of `choice_count` choices (default 2)
//!   over distinct endpoints, fewest in flight wins; with unequal weights (or while an endpoint
//!   is in slow start), Envoy's EDF on `weight / (in_flight + 1) ^ active_request_bias`.
//! - [`Policy::PeakEwma`]: power of `choice_count` choices on cost = RTT estimate ×
//!   (in flight + 1) / effective weight, Finagle's peak-EWMA estimate (below).
//! - [`Policy::RingHash`]: ketama ring, at least `min_ring_size` points, points ∝ weight (see
//!   `ring.rs` for why the scale is kept across updates).
//! - [`Policy::Maglev`]: Maglev lookup table of prime size `table_size` (default 65537).
//!
//! The hash policies build their ring or table over every endpoint and rebuild it only when the
//! names or weights change; a key whose endpoint is not eligible walks on along the ring (or the
//! table, whose slots are in pseudo-random order) to the next eligible one, so a health change
//! moves exactly the keys of the endpoints it concerns. Without a key they hash a random one.
//!
//! Around every policy:
//! - **Health.** [`Health::Healthy`] endpoints take new requests. [`Health::Unhealthy`] ones do
//!   not, except in panic. [`Health::Draining`] ones never get a new pick, even in panic, but
//!   their in-flight requests finish normally (`done` works, and they stay listed until a
//!   [`Balancer::set_endpoints`] leaves them out); they do not count in the panic ratio, since
//!   leaving on purpose is not a sign of a sick pool.
//! - **Panic.** When fewer than `panic_threshold` percent (default **50**, Envoy's
//!   `healthy_panic_threshold`) of the non-draining endpoints are healthy, health is ignored and
//!   requests spread over every non-draining endpoint. 50 is the default because a majority
//!   marked unhealthy more often means a broken health signal or a cascading failure than a
//!   pool that the few survivors can carry alone; concentrating the whole load on them tends to
//!   take them down too. Set 0 to disable panic (Istio's choice): with no healthy endpoint,
//!   `pick` then fails with [`BalanceError::NoEndpoint`].
//! - **Slow start.** An endpoint added by `set_endpoints` at time `joined` has effective weight
//!   `weight × max(min_weight_percent / 100, (t / window) ^ (1 / aggression))` with
//!   `t = max(now − joined, 1 ms)`, for `t < window` (Envoy's formula; the 1 ms floor keeps the
//!   weight positive when `min_weight_percent` is 0). Endpoints given to [`Balancer::new`] start
//!   warm: slow start does nothing when every endpoint is new. It applies to round robin, random,
//!   least request and peak EWMA; the hash policies use static weights, as ramping them would
//!   move keys all through the window.
//! - **Bounded loads** (`hash_balance_factor` = c × 100, ring hash and maglev only; Mirrokni,
//!   Thorup, Zadimoghaddam): a pick may not raise an endpoint's in-flight count above
//!   `ceil(c × (in flight over eligible endpoints + 1) × weight / total weight)`; when the hashed
//!   endpoint is at its cap the walk goes on along the ring (or table) to the next one below it.
//!   Such an endpoint always exists, so the walk ends.
//! - **Updates.** [`Balancer::set_endpoints`] keeps the in-flight count, the RTT estimate, the
//!   health and the join time of every endpoint whose name stays; new names join at `now`,
//!   healthy. Indices are valid until the next `set_endpoints`; a request in flight on an endpoint
//!   that is then removed is simply forgotten (mark it draining first to let it finish counted).
//!
//! Peak EWMA (Finagle `PeakEwma`, Linkerd's default): per endpoint a cost c (ns) and a stamp s.
//! A sample r at time t with w = exp(−(t − s) / decay): c ← r if r > c, else c·w + r·(1 − w);
//! s ← t. Reading the cost at time t first decays it, c ← c·exp(−(t − s) / decay), as Finagle does,
//! so an idle endpoint drifts back towards "free" (choose `decay` ≫ the time between samples of
//! one endpoint, or slow idle endpoints look cheap). An endpoint with no sample yet costs
//! `default_rtt` (default 30 ms, Linkerd's). The pick compares
//! `cost × (in_flight + 1) / (effective weight × (1 − failure ratio))`. Only this policy records
//! the estimate (the exp() it needs is most of the cost of a `done`).
//!
//! **Failures** are penalised twice, so that a host failing in 1 ms is avoided rather than
//! favoured: (1) a failure is recorded as an RTT sample of `max(latency, failure_penalty,
//! current estimate)` (`failure_penalty` default 1 s), so it never lowers the estimate however
//! fast it came back, and the peak rule lifts the estimate at once to at least the penalty;
//! (2) a failure ratio φ per endpoint, φ ← φ·(1 − 1/16) + [failed]/16 at each completion and
//! decayed like the cost (φ·exp(−Δt / decay)) between them, divides the score by (1 − φ)
//! (φ capped at 0.99). The penalty alone is not enough under load: a busy healthy endpoint's
//! `cost × (in_flight + 1)` easily exceeds 1 s while the failing one, empty, costs just the
//! penalty. The ratio barely touches a host with rare errors (1 % costs ×1.01), sidelines one
//! that fails steadily (all failures: ×100), and is forgiven with the cost's time constant once
//! the host is left alone.
//!
//! Invariants: `pick` returns an eligible endpoint (healthy, or unhealthy in panic; never
//! draining) or an error, and never panics; the same seed and call sequence give the same picks.

mod edf;
mod maglev;
mod ring;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::queue::{seconds_to_nanos, Nanos, ParamError, NANOS_PER_SEC};
use crate::rand::Rng;

use edf::Edf;
use maglev::Maglev;
use ring::Ring;

/// The hash of a request key for [`Balancer::pick`]: XXH64 with seed 0, as Envoy and gRPC hash
/// keys. `pick` needs a well-mixed 64-bit value; hash integers through their bytes too.
pub fn hash_key(key: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(key, 0)
}

/// Float view of a count or a time in ns (exact below 2**53 = 104 days of nanoseconds).
#[allow(clippy::cast_precision_loss)]
fn f(x: u64) -> f64 {
    x as f64
}

/// How a [`Balancer`] chooses among its eligible endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    RoundRobin,
    Random,
    LeastRequest,
    PeakEwma,
    RingHash,
    Maglev,
}

impl Policy {
    pub const ALL: [Policy; 6] = [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastRequest,
        Policy::PeakEwma,
        Policy::RingHash,
        Policy::Maglev,
    ];

    /// The snake_case name `FromStr` reads.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Random => "random",
            Policy::LeastRequest => "least_request",
            Policy::PeakEwma => "peak_ewma",
            Policy::RingHash => "ring_hash",
            Policy::Maglev => "maglev",
        }
    }

    /// Ring hash and maglev: the policies that use the key hash.
    pub fn is_hash(self) -> bool {
        matches!(self, Policy::RingHash | Policy::Maglev)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Policy, ParamError> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                ParamError(format!(
                    "unknown policy {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// An endpoint's health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Takes new requests.
    Healthy,
    /// Takes new requests only in panic.
    Unhealthy,
    /// Never takes a new request; requests in flight finish and are counted.
    Draining,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Draining => "draining",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Health {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Health, ParamError> {
        [Health::Healthy, Health::Unhealthy, Health::Draining]
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| {
                ParamError(format!(
                    "unknown health {s:?}; expected healthy, unhealthy or draining"
                ))
            })
    }
}

/// Tuning for every policy; a policy ignores the fields that are not its own, except
/// `hash_balance_factor`, which is refused outside the hash policies.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Endpoints drawn per pick by least request (equal weights) and peak EWMA; 2..=64,
    /// default 2. Draws are distinct; with `choice_count ≥` the number of eligible endpoints
    /// every one is compared.
    pub choice_count: u32,
    /// Least request with unequal weights: weight / (in_flight + 1) ^ bias; ≥ 0, default 1.0
    /// (0 gives plain weighted round robin).
    pub active_request_bias: f64,
    /// Peak EWMA time constant τ; > 0, default 10 s.
    pub decay: Nanos,
    /// Peak EWMA cost of an endpoint with no sample yet; > 0, default 30 ms.
    pub default_rtt: Nanos,
    /// Peak EWMA: a failure counts as an RTT sample of at least this; default 1 s.
    pub failure_penalty: Nanos,
    /// Ring hash: fewest points on the ring; 1..=8 388 608, default 1024.
    pub min_ring_size: u64,
    /// Ring hash: most points on the ring; ≥ `min_ring_size`, ≤ 8 388 608 (the default).
    pub max_ring_size: u64,
    /// Maglev table size; prime, ≤ 5 000 011, at least the number of endpoints; default 65537.
    pub table_size: u64,
    /// Bounded loads for ring hash and maglev, as a percentage c × 100 (≥ 100; Envoy's
    /// `hash_balance_factor`, typically 120–200); `None` (default) disables the bound.
    pub hash_balance_factor: Option<u32>,
    /// Slow-start window; 0 (default) disables slow start.
    pub slow_start_window: Nanos,
    /// Slow-start aggression; finite and > 0, default 1.0 (linear ramp).
    pub slow_start_aggression: f64,
    /// Slow-start floor as a percentage of the weight; 0..=100, default 10.
    pub slow_start_min_weight_percent: f64,
    /// Panic below this percentage of healthy non-draining endpoints; 0..=100, default 50;
    /// 0 disables panic.
    pub panic_threshold: f64,
}

/// Longest weighted round-robin period (Σ of integer weights) replayed from a table; beyond it,
/// or with fractional weights, every pick goes through the EDF heap.
const SCHEDULE_MAX: u64 = 16_384;

/// Envoy's bound for both ring sizes.
pub const MAX_RING_SIZE: u64 = 8_388_608;

impl Default for Options {
    fn default() -> Options {
        Options {
            choice_count: 2,
            active_request_bias: 1.0,
            decay: 10 * NANOS_PER_SEC,
            default_rtt: 30_000_000,
            failure_penalty: NANOS_PER_SEC,
            min_ring_size: 1024,
            max_ring_size: MAX_RING_SIZE,
            table_size: 65_537,
            hash_balance_factor: None,
            slow_start_window: 0,
            slow_start_aggression: 1.0,
            slow_start_min_weight_percent: 10.0,
            panic_threshold: 50.0,
        }
    }
}

impl Options {
    /// The option names [`Options::set`] accepts (the field names).
    pub const KEYS: [&'static str; 13] = [
        "choice_count",
        "active_request_bias",
        "decay",
        "default_rtt",
        "failure_penalty",
        "min_ring_size",
        "max_ring_size",
        "table_size",
        "hash_balance_factor",
        "slow_start_window",
        "slow_start_aggression",
        "slow_start_min_weight_percent",
        "panic_threshold",
    ];

    /// Sets the option `key` from a number, as a binding receives keyword arguments: durations
    /// (`decay`, `default_rtt`, `failure_penalty`, `slow_start_window`) in **seconds**, counts
    /// and sizes as whole numbers. Only the form is checked here; [`Options::validate`] (run by
    /// [`Balancer::new`]) checks the ranges.
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), ParamError> {
        let whole = |max: u64| -> Result<u64, ParamError> {
            if value.is_finite() && value.fract() == 0.0 && (0.0..=f(max)).contains(&value) {
                #[allow(clippy::cast_sign_loss)] // checked >= 0 above
                Ok(value as u64)
            } else {
                Err(ParamError(format!(
                    "{key} must be a whole number between 0 and {max}, got {value}"
                )))
            }
        };
        match key {
            "choice_count" => self.choice_count = whole(u64::from(u32::MAX))? as u32,
            "active_request_bias" => self.active_request_bias = value,
            "decay" => self.decay = seconds_to_nanos(value, key)?,
            "default_rtt" => self.default_rtt = seconds_to_nanos(value, key)?,
            "failure_penalty" => self.failure_penalty = seconds_to_nanos(value, key)?,
            "min_ring_size" => self.min_ring_size = whole(1 << 53)?,
            "max_ring_size" => self.max_ring_size = whole(1 << 53)?,
            "table_size" => self.table_size = whole(1 << 53)?,
            "hash_balance_factor" => {
                self.hash_balance_factor = Some(whole(u64::from(u32::MAX))? as u32);
            }
            "slow_start_window" => self.slow_start_window = seconds_to_nanos(value, key)?,
            "slow_start_aggression" => self.slow_start_aggression = value,
            "slow_start_min_weight_percent" => self.slow_start_min_weight_percent = value,
            "panic_threshold" => self.panic_threshold = value,
            _ => {
                return Err(ParamError(format!(
                    "unknown option {key:?}; expected one of {}",
                    Options::KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Checks every field for `policy`; the message names the option and the rule.
    pub fn validate(&self, policy: Policy) -> Result<(), ParamError> {
        let err = |m: String| Err(ParamError(m));
        if !(2..=64).contains(&self.choice_count) {
            return err(format!(
                "choice_count must be between 2 and 64, got {}",
                self.choice_count
            ));
        }
        if !(self.active_request_bias.is_finite() && self.active_request_bias >= 0.0) {
            return err(format!(
                "active_request_bias must be a finite number >= 0, got {}",
                self.active_request_bias
            ));
        }
        if self.decay == 0 {
            return err("decay must be > 0".into());
        }
        if self.default_rtt == 0 {
            return err("default_rtt must be > 0".into());
        }
        if !(1..=MAX_RING_SIZE).contains(&self.min_ring_size) {
            return err(format!(
                "min_ring_size must be between 1 and {MAX_RING_SIZE}, got {}",
                self.min_ring_size
            ));
        }
        if !(self.min_ring_size..=MAX_RING_SIZE).contains(&self.max_ring_size) {
            return err(format!(
                "max_ring_size must be between min_ring_size ({}) and {MAX_RING_SIZE}, got {}",
                self.min_ring_size, self.max_ring_size
            ));
        }
        if self.table_size > maglev::MAX_TABLE_SIZE || !maglev::is_prime(self.table_size) {
            return err(format!(
                "table_size must be a prime <= {}, got {}",
                maglev::MAX_TABLE_SIZE,
                self.table_size
            ));
        }
        if let Some(c) = self.hash_balance_factor {
            if !policy.is_hash() {
                return err(format!(
                    "hash_balance_factor applies to ring_hash and maglev only, not {policy}"
                ));
            }
            if c < 100 {
                return err(format!(
                    "hash_balance_factor is a percentage >= 100, got {c}"
                ));
            }
        }
        if !(self.slow_start_aggression.is_finite() && self.slow_start_aggression > 0.0) {
            return err(format!(
                "slow_start_aggression must be a finite number > 0, got {}",
                self.slow_start_aggression
            ));
        }
        if !(0.0..=100.0).contains(&self.slow_start_min_weight_percent) {
            return err(format!(
                "slow_start_min_weight_percent must be between 0 and 100, got {}",
                self.slow_start_min_weight_percent
            ));
        }
        if !(0.0..=100.0).contains(&self.panic_threshold) {
            return err(format!(
                "panic_threshold must be between 0 and 100, got {}",
                self.panic_threshold
            ));
        }
        Ok(())
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceError {
    /// No endpoint can take a request; the text says why (empty set, all draining, none
    /// healthy with panic disabled).
    NoEndpoint(&'static str),
    /// An index past the end of the endpoint list.
    UnknownEndpoint(usize),
    /// A refused option, weight or endpoint set.
    Param(ParamError),
}

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalanceError::NoEndpoint(why) => write!(f, "no endpoint available: {why}"),
            BalanceError::UnknownEndpoint(i) => write!(f, "no endpoint with index {i}"),
            BalanceError::Param(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BalanceError {}

impl From<ParamError> for BalanceError {
    fn from(e: ParamError) -> BalanceError {
        BalanceError::Param(e)
    }
}

/// A snapshot of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo<'a> {
    pub name: &'a str,
    /// The configured weight.
    pub weight: f64,
    /// The weight after slow start at the time asked.
    pub effective_weight: f64,
    pub health: Health,
    pub in_flight: u64,
    /// The peak-EWMA RTT estimate in ns, decayed to the time asked; `None` before the first
    /// `done`, and always under the other policies (only peak EWMA pays for recording it).
    pub ewma: Option<f64>,
    /// Peak EWMA's failure ratio φ (0..1), decayed to the time asked.
    pub failure_ratio: f64,
    /// When `set_endpoints` added it; `None` for the endpoints given to `new`.
    pub joined: Option<Nanos>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    weight: f64,
    health: Health,
    in_flight: u64,
    /// Peak-EWMA cost in ns, valid when `sampled`, as of `stamp`.
    cost: f64,
    stamp: Nanos,
    sampled: bool,
    /// Failure ratio φ as of `stamp`.
    fail: f64,
    joined: Option<Nanos>,
}

/// Weight of one completion in the failure ratio.
const FAIL_ALPHA: f64 = 1.0 / 16.0;
/// Largest failure ratio the score divides by (1 − φ) with: at most ×100.
const FAIL_CAP: f64 = 0.99;

impl Endpoint {
    fn new(weight: f64, joined: Option<Nanos>) -> Endpoint {
        Endpoint {
            weight,
            health: Health::Healthy,
            in_flight: 0,
            cost: 0.0,
            stamp: 0,
            sampled: false,
            fail: 0.0,
            joined,
        }
    }

    /// exp(−(now − stamp) / decay), the weight the past keeps at `now`.
    fn keep(&self, now: Nanos, decay: Nanos) -> f64 {
        let dt = now.saturating_sub(self.stamp);
        // exp(0) = 1 exactly; calls within one clock tick (the coarse clock's 1-4 ms) skip exp().
        if dt == 0 {
            return 1.0;
        }
        (-f(dt) / f(decay)).exp()
    }

    /// The RTT estimate at `now` without changing state.
    fn estimate(&self, now: Nanos, o: &Options) -> f64 {
        if self.sampled {
            self.cost * self.keep(now, o.decay)
        } else {
            f(o.default_rtt)
        }
    }

    /// Finagle's observe(r), and the failure ratio's update.
    fn observe(&mut self, r: f64, failed: bool, now: Nanos, decay: Nanos) {
        // exp() is the cost of a `done`: computed only when a blend needs it (not on a peak,
        // nor for a failure ratio of 0).
        let mut w = None;
        let mut keep = |ep: &Endpoint| *w.get_or_insert_with(|| ep.keep(now, decay));
        if self.sampled && r <= self.cost {
            let w = keep(self);
            self.cost = self.cost * w + r * (1.0 - w);
        } else {
            self.cost = r;
            self.sampled = true;
        }
        if self.fail > 0.0 {
            self.fail *= keep(self) * (1.0 - FAIL_ALPHA);
        }
        if failed {
            self.fail += FAIL_ALPHA;
        }
        self.stamp = self.stamp.max(now);
    }

    /// Peak-EWMA score at `now`, decaying cost and failure ratio in place as Finagle's reads do.
    fn ewma_score(&mut self, o: &Options, now: Nanos) -> f64 {
        let w = self.keep(now, o.decay);
        self.fail *= w;
        let est = if self.sampled {
            self.cost *= w;
            self.cost
        } else {
            f(o.default_rtt)
        };
        self.stamp = self.stamp.max(now);
        est * f(self.in_flight + 1)
            / (effective_weight(self, o, now) * (1.0 - self.fail.min(FAIL_CAP)))
    }
}

/// The slow-start multiplier of `ep` at `now` (1 outside the window).
fn slow_start(ep: &Endpoint, o: &Options, now: Nanos) -> f64 {
    let (Some(joined), window) = (ep.joined, o.slow_start_window) else {
        return 1.0;
    };
    let t = now.saturating_sub(joined);
    if window == 0 || t >= window {
        return 1.0;
    }
    let x = f(t.max(1_000_000)) / f(window);
    let ramp = if o.slow_start_aggression.to_bits() == 1.0f64.to_bits() {
        x
    } else {
        x.powf(1.0 / o.slow_start_aggression)
    };
    ramp.max(o.slow_start_min_weight_percent / 100.0).min(1.0)
}

fn effective_weight(ep: &Endpoint, o: &Options, now: Nanos) -> f64 {
    ep.weight * slow_start(ep, o, now)
}

/// Least request's EDF weight: effective weight / (in_flight + 1) ^ bias.
fn lr_weight(ep: &Endpoint, o: &Options, now: Nanos) -> f64 {
    let w = effective_weight(ep, o, now);
    let active = f(ep.in_flight + 1);
    let b = o.active_request_bias;
    if b.to_bits() == 1.0f64.to_bits() {
        w / active
    } else if b == 0.0 {
        w
    } else {
        w / active.powf(b)
    }
}

fn check_weight(name: &str, w: f64) -> Result<(), ParamError> {
    if w.is_finite() && w > 0.0 {
        Ok(())
    } else {
        Err(ParamError(format!(
            "weight of endpoint {name:?} must be a finite number > 0, got {w}"
        )))
    }
}

/// A load balancer over named, weighted endpoints. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Balancer {
    policy: Policy,
    opts: Options,
    rng: Rng,
    names: Vec<String>,
    index: HashMap<String, usize>,
    eps: Vec<Endpoint>,
    // Derived from health and weights by `refresh`.
    eligible: Vec<u32>,
    is_eligible: Vec<bool>,
    panic: bool,
    /// Static weights of the eligible endpoints are all equal.
    uniform: bool,
    /// Some eligible endpoint is in slow start while `now < warm_until`.
    warm_until: Nanos,
    /// Earliest join among eligible endpoints (`None` if one started warm): the largest
    /// slow-start factor belongs to it.
    oldest_join: Option<Nanos>,
    /// In-flight requests on eligible endpoints (bounded loads).
    eligible_load: u64,
    eligible_weight: f64,
    /// Random with unequal weights: Walker/Vose alias table over positions in `eligible`.
    alias: Alias,
    /// Emptied when the eligible set changes, rebuilt at the next pick that needs it (with the
    /// weights at that pick's `now`).
    edf: Edf,
    /// Round-robin tie order: a rotation of the indices drawn from the seed.
    rotation: u64,
    /// Round robin with equal weights and nobody warming: the next position in `eligible`
    /// (the order the EDF's ties would give, without the heap).
    rr_next: usize,
    /// Round robin with integer weights summing to at most `SCHEDULE_MAX` and nobody warming:
    /// one period of the EDF's picks, replayed (the EDF is periodic with period Σw then).
    schedule: Vec<u32>,
    schedule_next: usize,
    /// Eligible weights are integers with a sum of at most `SCHEDULE_MAX`.
    schedulable: bool,
    ring: Ring,
    maglev: Maglev,
}

impl Balancer {
    /// A balancer over `endpoints` (name, weight): distinct names, finite positive weights.
    /// The endpoints start healthy and warm (no slow start). An empty set is allowed: `pick`
    /// fails until `set_endpoints` brings some.
    pub fn new<S: AsRef<str>>(
        policy: Policy,
        endpoints: &[(S, f64)],
        options: Options,
        seed: u64,
    ) -> Result<Balancer, BalanceError> {
        options.validate(policy)?;
        let mut rng = Rng::new(seed);
        let rotation = rng.next_u64();
        let mut b = Balancer {
            policy,
            opts: options,
            rng,
            names: Vec::new(),
            index: HashMap::new(),
            eps: Vec::new(),
            eligible: Vec::new(),
            is_eligible: Vec::new(),
            panic: false,
            uniform: true,
            warm_until: 0,
            oldest_join: None,
            eligible_load: 0,
            eligible_weight: 0.0,
            alias: Alias::default(),
            edf: Edf::default(),
            rotation,
            rr_next: 0,
            schedule: Vec::new(),
            schedule_next: 0,
            schedulable: false,
            ring: Ring::default(),
            maglev: Maglev::default(),
        };
        b.install(endpoints, None)?;
        Ok(b)
    }

    /// Replaces the endpoint set. Endpoints whose name stays keep their in-flight count, RTT
    /// estimate, health and join time (and take the new weight); new ones join healthy at `now`
    /// (slow start counts from then). On error nothing changes.
    pub fn set_endpoints<S: AsRef<str>>(
        &mut self,
        endpoints: &[(S, f64)],
        now: Nanos,
    ) -> Result<(), BalanceError> {
        self.install(endpoints, Some(now))
    }

    fn install<S: AsRef<str>>(
        &mut self,
        endpoints: &[(S, f64)],
        now: Option<Nanos>,
    ) -> Result<(), BalanceError> {
        let mut seen = HashSet::with_capacity(endpoints.len());
        for (name, w) in endpoints {
            let name = name.as_ref();
            check_weight(name, *w)?;
            if !seen.insert(name) {
                return Err(ParamError(format!("endpoint {name:?} is listed twice")).into());
            }
        }
        if u32::try_from(endpoints.len()).is_err() {
            return Err(ParamError("too many endpoints (at most 2**32 - 1)".into()).into());
        }
        if self.policy == Policy::Maglev && endpoints.len() as u64 > self.opts.table_size {
            return Err(ParamError(format!(
                "maglev table_size ({}) must be at least the number of endpoints ({})",
                self.opts.table_size,
                endpoints.len()
            ))
            .into());
        }
        let mut names = Vec::with_capacity(endpoints.len());
        let mut eps = Vec::with_capacity(endpoints.len());
        for (name, w) in endpoints {
            let name = name.as_ref();
            let ep = match self.index.get(name) {
                Some(&old) => Endpoint {
                    weight: *w,
                    ..self.eps[old].clone()
                },
                None => Endpoint::new(*w, now),
            };
            names.push(name.to_owned());
            eps.push(ep);
        }
        let same = names == self.names
            && eps
                .iter()
                .zip(&self.eps)
                .all(|(a, b)| a.weight.to_bits() == b.weight.to_bits());
        self.index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        self.names = names;
        self.eps = eps;
        if !same || now.is_none() {
            let weights: Vec<f64> = self.eps.iter().map(|e| e.weight).collect();
            match self.policy {
                Policy::RingHash => {
                    let prev = (self.ring.len() > 0).then_some(&self.ring);
                    self.ring = Ring::build(
                        &self.names,
                        &weights,
                        prev,
                        self.opts.min_ring_size,
                        self.opts.max_ring_size,
                    );
                }
                Policy::Maglev => {
                    self.maglev = Maglev::build(&self.names, &weights, self.opts.table_size);
                }
                _ => {}
            }
        }
        self.refresh();
        Ok(())
    }

    /// Recomputes everything derived from health and weights.
    fn refresh(&mut self) {
        let (mut live, mut healthy) = (0u64, 0u64);
        for ep in &self.eps {
            if ep.health != Health::Draining {
                live += 1;
                healthy += u64::from(ep.health == Health::Healthy);
            }
        }
        self.panic = live > 0 && f(healthy) * 100.0 < self.opts.panic_threshold * f(live);
        self.eligible.clear();
        self.is_eligible.clear();
        self.eligible_load = 0;
        self.eligible_weight = 0.0;
        self.warm_until = 0;
        self.oldest_join = None;
        let mut any_warm = false;
        let mut first_weight = None;
        self.uniform = true;
        for (i, ep) in self.eps.iter().enumerate() {
            let ok = match ep.health {
                Health::Healthy => true,
                Health::Unhealthy => self.panic,
                Health::Draining => false,
            };
            self.is_eligible.push(ok);
            if !ok {
                continue;
            }
            self.eligible.push(i as u32);
            self.eligible_load += ep.in_flight;
            self.eligible_weight += ep.weight;
            let first = *first_weight.get_or_insert(ep.weight);
            self.uniform &= first.to_bits() == ep.weight.to_bits();
            match ep.joined {
                Some(j) => {
                    if self.opts.slow_start_window > 0 {
                        self.warm_until = self
                            .warm_until
                            .max(j.saturating_add(self.opts.slow_start_window));
                    }
                    self.oldest_join = Some(self.oldest_join.map_or(j, |o: Nanos| o.min(j)));
                }
                None => any_warm = true,
            }
        }
        if any_warm {
            self.oldest_join = None;
        }
        self.schedulable = self.eligible_weight <= f(SCHEDULE_MAX)
            && self
                .eligible
                .iter()
                .all(|&i| self.eps[i as usize].weight.fract() == 0.0);
        self.schedule.clear();
        let rot = self.rotation % (self.eps.len() as u64).max(1);
        self.rr_next = self.eligible.partition_point(|&i| u64::from(i) < rot);
        if self.rr_next == self.eligible.len() {
            self.rr_next = 0;
        }
        if self.policy == Policy::Random && !self.uniform {
            let eps = &self.eps;
            self.alias
                .build(self.eligible.iter().map(|&i| eps[i as usize].weight));
        }
        self.edf.clear();
    }

    fn rebuild_edf(&mut self, now: Nanos) {
        self.edf.clear();
        let n = self.eps.len() as u64;
        let rot = self.rotation % n.max(1);
        for &i in &self.eligible {
            let ep = &self.eps[i as usize];
            let w = if self.policy == Policy::LeastRequest {
                lr_weight(ep, &self.opts, now)
            } else {
                effective_weight(ep, &self.opts, now)
            };
            let tie = (u64::from(i) + n - rot) % n;
            self.edf.push(i as usize, tie as u32, w);
        }
    }

    /// One period of the weighted round robin (static integer weights, Σw picks).
    fn build_schedule(&mut self) {
        let mut edf = Edf::default();
        let n = self.eps.len() as u64;
        let rot = self.rotation % n.max(1);
        for &i in &self.eligible {
            let tie = (u64::from(i) + n - rot) % n;
            edf.push(i as usize, tie as u32, self.eps[i as usize].weight);
        }
        #[allow(clippy::cast_sign_loss)] // a positive whole number <= SCHEDULE_MAX
        let period = self.eligible_weight.round() as usize;
        let eps = &self.eps;
        self.schedule = (0..period)
            .filter_map(|_| edf.pick(|i| eps[i].weight))
            .map(|i| i as u32)
            .collect();
        self.schedule_next = 0;
    }

    fn no_endpoint(&self) -> BalanceError {
        BalanceError::NoEndpoint(if self.eps.is_empty() {
            "the endpoint set is empty"
        } else if self.eps.iter().all(|e| e.health == Health::Draining) {
            "every endpoint is draining"
        } else {
            "no endpoint is healthy and panic mode is disabled (panic_threshold = 0)"
        })
    }

    /// Picks an endpoint for a request and counts it in flight there. `key_hash` is the request
    /// key's hash for the hash policies ([`hash_key`]; `None` draws a random one) and is ignored
    /// by the others.
    pub fn pick(&mut self, key_hash: Option<u64>, now: Nanos) -> Result<usize, BalanceError> {
        if self.eligible.is_empty() {
            return Err(self.no_endpoint());
        }
        let idx = match self.policy {
            Policy::RoundRobin => {
                if now < self.warm_until {
                    self.pick_edf(now)
                } else if self.uniform {
                    let i = self.eligible[self.rr_next] as usize;
                    self.rr_next += 1;
                    if self.rr_next == self.eligible.len() {
                        self.rr_next = 0;
                    }
                    i
                } else if self.schedulable {
                    if self.schedule.is_empty() {
                        self.build_schedule();
                    }
                    let i = self.schedule[self.schedule_next] as usize;
                    self.schedule_next += 1;
                    if self.schedule_next == self.schedule.len() {
                        self.schedule_next = 0;
                    }
                    i
                } else {
                    self.pick_edf(now)
                }
            }
            Policy::LeastRequest => {
                if self.uniform && now >= self.warm_until {
                    let eps = &self.eps;
                    draw_best(&mut self.rng, &self.eligible, self.opts.choice_count, |i| {
                        f(eps[i].in_flight)
                    })
                } else {
                    self.pick_edf(now)
                }
            }
            Policy::Random => self.pick_random(now),
            Policy::PeakEwma => {
                let (eps, o) = (&mut self.eps, &self.opts);
                draw_best(&mut self.rng, &self.eligible, o.choice_count, |i| {
                    eps[i].ewma_score(o, now)
                })
            }
            Policy::RingHash | Policy::Maglev => {
                let h = key_hash.unwrap_or_else(|| self.rng.next_u64());
                self.pick_hash(h)
            }
        };
        self.eps[idx].in_flight += 1;
        self.eligible_load += 1;
        Ok(idx)
    }

    fn pick_edf(&mut self, now: Nanos) -> usize {
        if self.edf.is_empty() {
            self.rebuild_edf(now);
        }
        let (eps, o, lr) = (&self.eps, &self.opts, self.policy == Policy::LeastRequest);
        self.edf
            .pick(|i| {
                if lr {
                    lr_weight(&eps[i], o, now)
                } else {
                    effective_weight(&eps[i], o, now)
                }
            })
            // The heap holds every eligible endpoint and `pick` checked there is one.
            .unwrap_or(self.eligible[0] as usize)
    }

    fn pick_random(&mut self, now: Nanos) -> usize {
        let n = self.eligible.len();
        let warming = now < self.warm_until;
        // Slow start by rejection: accept with factor / (largest factor), which gives shares
        // ∝ weight × factor exactly. The largest factor is the oldest endpoint's.
        let top = match (warming, self.oldest_join) {
            (true, Some(j)) => slow_start(&Endpoint::new(1.0, Some(j)), &self.opts, now),
            _ => 1.0,
        };
        let mut idx = 0;
        for _ in 0..64 {
            let pos = self.rng.below(n as u64) as usize;
            let pos = if self.uniform {
                pos
            } else {
                self.alias.resolve(pos, self.rng.unit())
            };
            idx = self.eligible[pos] as usize;
            if !warming {
                break;
            }
            let factor = slow_start(&self.eps[idx], &self.opts, now);
            if factor >= top || self.rng.unit() * top < factor {
                break;
            }
        }
        idx
    }

    fn pick_hash(&mut self, hash: u64) -> usize {
        let (len, start) = if self.policy == Policy::RingHash {
            (self.ring.len(), self.ring.start(hash))
        } else {
            (self.maglev.len(), self.maglev.start(hash))
        };
        // Bounded loads: the cap per unit of weight after this pick.
        let per_weight = self
            .opts
            .hash_balance_factor
            .map(|c| f(u64::from(c)) / 100.0 * f(self.eligible_load + 1) / self.eligible_weight);
        let mut pos = start;
        for _ in 0..len {
            let idx = if self.policy == Policy::RingHash {
                self.ring.owner(pos)
            } else {
                self.maglev.owner(pos)
            };
            if self.is_eligible[idx] {
                match per_weight {
                    None => return idx,
                    Some(p) => {
                        let ep = &self.eps[idx];
                        if f(ep.in_flight + 1) <= (p * ep.weight).ceil() {
                            return idx;
                        }
                    }
                }
            }
            pos += 1;
            if pos == len {
                pos = 0;
            }
        }
        // Unreachable in theory (some endpoint is always below its cap and every endpoint owns
        // a point); the least loaded relative to weight is the safe answer.
        let eps = &self.eps;
        self.eligible
            .iter()
            .map(|&i| i as usize)
            .min_by(|&a, &b| {
                (f(eps[a].in_flight) / eps[a].weight)
                    .total_cmp(&(f(eps[b].in_flight) / eps[b].weight))
            })
            .unwrap_or(0)
    }

    /// Ends a request on endpoint `index` that took `latency` ns and succeeded (`ok`) or failed,
    /// observed at `now`. Updates the in-flight count (never below 0) and, under peak EWMA, the
    /// RTT estimate and failure ratio (failures per the module docs).
    pub fn done(
        &mut self,
        index: usize,
        latency: Nanos,
        ok: bool,
        now: Nanos,
    ) -> Result<(), BalanceError> {
        let eligible = *self
            .is_eligible
            .get(index)
            .ok_or(BalanceError::UnknownEndpoint(index))?;
        let o = &self.opts;
        let ep = &mut self.eps[index];
        if ep.in_flight > 0 {
            ep.in_flight -= 1;
            if eligible {
                self.eligible_load = self.eligible_load.saturating_sub(1);
            }
        }
        // Only peak EWMA reads the estimate; the exp() it costs is most of a `done`.
        if self.policy == Policy::PeakEwma {
            let mut r = f(latency);
            if !ok {
                r = r.max(f(o.failure_penalty)).max(ep.estimate(now, o));
            }
            ep.observe(r, !ok, now, o.decay);
        }
        Ok(())
    }

    /// Sets the health of endpoint `index` (O(n): the eligible set is recomputed).
    pub fn set_health(&mut self, index: usize, health: Health) -> Result<(), BalanceError> {
        let ep = self
            .eps
            .get_mut(index)
            .ok_or(BalanceError::UnknownEndpoint(index))?;
        if ep.health != health {
            ep.health = health;
            self.refresh();
        }
        Ok(())
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn len(&self) -> usize {
        self.eps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.eps.is_empty()
    }

    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn health(&self, index: usize) -> Option<Health> {
        self.eps.get(index).map(|e| e.health)
    }

    pub fn in_flight(&self, index: usize) -> Option<u64> {
        self.eps.get(index).map(|e| e.in_flight)
    }

    /// True while fewer than `panic_threshold` percent of the non-draining endpoints are
    /// healthy (picks then ignore health).
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// How many endpoints a pick can return now.
    pub fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    /// A snapshot of endpoint `index` at `now`.
    pub fn endpoint(&self, index: usize, now: Nanos) -> Option<EndpointInfo<'_>> {
        let ep = self.eps.get(index)?;
        Some(EndpointInfo {
            name: &self.names[index],
            weight: ep.weight,
            effective_weight: effective_weight(ep, &self.opts, now),
            health: ep.health,
            in_flight: ep.in_flight,
            ewma: ep.sampled.then(|| ep.estimate(now, &self.opts)),
            failure_ratio: ep.fail * ep.keep(now, self.opts.decay),
            joined: ep.joined,
        })
    }

    /// Snapshots of every endpoint at `now`, in index order.
    pub fn endpoints(&self, now: Nanos) -> impl Iterator<Item = EndpointInfo<'_>> + '_ {
        (0..self.eps.len()).filter_map(move |i| self.endpoint(i, now))
    }
}

/// Walker's alias method (Vose's construction): O(1) weighted draws. Position p is kept with
/// probability `keep[p]`, else replaced by `other[p]`.
#[derive(Debug, Clone, Default)]
struct Alias {
    keep: Vec<f64>,
    other: Vec<u32>,
}

impl Alias {
    fn build(&mut self, weights: impl ExactSizeIterator<Item = f64>) {
        let n = weights.len();
        let mut p: Vec<f64> = weights.collect();
        let total: f64 = p.iter().sum();
        for x in &mut p {
            *x *= f(n as u64) / total;
        }
        self.keep.clear();
        self.keep.resize(n, 1.0);
        self.other.clear();
        self.other.extend(0..n as u32);
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| p[i] < 1.0);
        while let (Some(s), Some(l)) = (small.pop(), large.pop()) {
            self.keep[s] = p[s];
            self.other[s] = l as u32;
            p[l] -= 1.0 - p[s];
            if p[l] < 1.0 {
                small.push(l);
            } else {
                large.push(l);
            }
        }
        // Whatever is left holds (up to rounding) exactly one unit: kept with keep = 1.
    }

    fn resolve(&self, pos: usize, u: f64) -> usize {
        if u < self.keep[pos] {
            pos
        } else {
            self.other[pos] as usize
        }
    }
}

/// Power of `k` choices: the best (lowest `score`) of `k` distinct endpoints drawn uniformly from
/// `eligible` (non-empty), or of all of them when `k ≥ len`. Ties go to the earlier draw, which is
/// a uniformly random one.
fn draw_best(
    rng: &mut Rng,
    eligible: &[u32],
    k: u32,
    mut score: impl FnMut(usize) -> f64,
) -> usize {
    let n = eligible.len();
    if n == 1 {
        return eligible[0] as usize;
    }
    let k = k as usize;
    if k >= n {
        // Full scan, ties broken uniformly (reservoir of the minima).
        let mut best = eligible[0] as usize;
        let mut best_score = score(best);
        let mut ties = 1u64;
        for &i in &eligible[1..] {
            let s = score(i as usize);
            if s < best_score {
                (best, best_score, ties) = (i as usize, s, 1);
            } else if s <= best_score {
                // Equal (the branch above took the smaller).
                ties += 1;
                if rng.below(ties) == 0 {
                    best = i as usize;
                }
            }
        }
        return best;
    }
    let a = rng.below(n as u64) as usize;
    if k == 2 {
        let mut b = rng.below(n as u64 - 1) as usize;
        if b >= a {
            b += 1;
        }
        let (ia, ib) = (eligible[a] as usize, eligible[b] as usize);
        return if score(ib) < score(ia) { ib } else { ia };
    }
    // k ≤ 64 < n: rejection keeps the draws distinct and in uniformly random order.
    let mut drawn = [0usize; 64];
    drawn[0] = a;
    let mut best = eligible[a] as usize;
    let mut best_score = score(best);
    for j in 1..k {
        let p = loop {
            let p = rng.below(n as u64) as usize;
            if !drawn[..j].contains(&p) {
                break p;
            }
        };
        drawn[j] = p;
        let s = score(eligible[p] as usize);
        if s < best_score {
            (best, best_score) = (eligible[p] as usize, s);
        }
    }
    best
}
