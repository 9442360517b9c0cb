//! A route table for both families: the RIB is the truth, a Poptrie answers lookups, and every
//! change to the first is carried into the second incrementally.

use super::poptrie::Poptrie;
use super::rib::Rib;
use super::{parse_prefix, Address, AnyPrefix, Prefix, PrefixError};
use core::fmt;

/// The largest next-hop id (`u32::MAX` is reserved inside the lookup structure for "no route").
pub const MAX_VALUE: u32 = u32::MAX - 1;

/// Why a route-table operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    Prefix(PrefixError),
    /// A value outside `0..=MAX_VALUE`.
    Value(u64),
    /// A bad row of a batch (0-based), or a bad line of a file (1-based), and why.
    Row {
        index: usize,
        message: String,
    },
    Line {
        line: usize,
        message: String,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Prefix(e) => e.fmt(f),
            RouteError::Value(v) => write!(f, "value {v} is outside 0..={MAX_VALUE}"),
            RouteError::Row { index, message } => write!(f, "row {index}: {message}"),
            RouteError::Line { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for RouteError {}

impl From<PrefixError> for RouteError {
    fn from(e: PrefixError) -> Self {
        RouteError::Prefix(e)
    }
}

/// Check a value and narrow it to a next-hop id.
pub fn check_value(v: u64) -> Result<u32, RouteError> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v <= MAX_VALUE)
        .ok_or(RouteError::Value(v))
}

/// One route update: `Some(value)` adds or replaces the route, `None` withdraws it.
pub type Update<A> = (Prefix<A>, Option<u32>);

/// The routes of one family.
#[derive(Debug, Clone)]
pub struct Family<A: Address> {
    rib: Rib<A>,
    fib: Poptrie<A>,
}

/// Batches at least this large (and a tenth of the table) are applied to the RIB and compiled
/// in one build.
const BULK: usize = 4096;

impl<A: Address> Default for Family<A> {
    fn default() -> Self {
        let rib = Rib::new();
        let fib = Poptrie::build(&rib);
        Family { rib, fib }
    }
}

impl<A: Address> Family<A> {
    pub fn len(&self) -> usize {
        self.rib.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rib.is_empty()
    }
    pub fn rib(&self) -> &Rib<A> {
        &self.rib
    }

    /// Add or replace a route; returns the old value.
    pub fn insert(&mut self, p: Prefix<A>, value: u32) -> Option<u32> {
        let old = self.rib.insert(p, value);
        if old != Some(value) {
            self.fib.update_known(&self.rib, p, Some(value));
        }
        old
    }

    /// Remove a route; returns its value.
    pub fn remove(&mut self, p: Prefix<A>) -> Option<u32> {
        let old = self.rib.remove(p);
        if old.is_some() {
            self.fib.update_known(&self.rib, p, None);
        }
        old
    }

    /// Add or replace many routes (see [`Family::apply`]).
    pub fn extend(&mut self, routes: &[(Prefix<A>, u32)]) {
        let ops: Vec<Update<A>> = routes.iter().map(|&(p, v)| (p, Some(v))).collect();
        self.apply(&ops);
    }

    /// Apply updates in order: `Some(value)` adds or replaces a route, `None` withdraws it (a
    /// withdrawal of an absent route does nothing). A batch that is large next to the table
    /// goes to the RIB and is compiled in one build (cheaper than that many incremental
    /// updates); a smaller one updates the compiled table route by route.
    pub fn apply(&mut self, ops: &[Update<A>]) {
        if ops.len() >= BULK && ops.len() * 10 >= self.rib.len() {
            for &(p, v) in ops {
                match v {
                    Some(v) => {
                        self.rib.insert(p, v);
                    }
                    None => {
                        self.rib.remove(p);
                    }
                }
            }
            self.fib = Poptrie::build(&self.rib);
        } else {
            for &(p, v) in ops {
                match v {
                    Some(v) => {
                        self.insert(p, v);
                    }
                    None => {
                        self.remove(p);
                    }
                }
            }
        }
    }

    pub fn get(&self, p: Prefix<A>) -> Option<u32> {
        self.rib.get(p)
    }

    #[inline]
    pub fn lookup(&self, addr: A) -> Option<u32> {
        self.fib.lookup(addr)
    }

    /// The matching route itself (slower than [`Family::lookup`]: it walks the RIB).
    pub fn lookup_prefix(&self, addr: A) -> Option<(Prefix<A>, u32)> {
        self.rib.lookup(addr)
    }

    /// Look up every address; -1 where no route matches.
    pub fn lookup_many(&self, addrs: &[A], out: &mut [i64]) {
        self.fib.lookup_many(addrs, out);
    }
}

/// IPv4 and IPv6 routes together.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub v4: Family<u32>,
    pub v6: Family<u128>,
}

impl RouteTable {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&mut self, p: AnyPrefix, value: u32) -> Option<u32> {
        match p {
            AnyPrefix::V4(p) => self.v4.insert(p, value),
            AnyPrefix::V6(p) => self.v6.insert(p, value),
        }
    }

    pub fn remove(&mut self, p: AnyPrefix) -> Option<u32> {
        match p {
            AnyPrefix::V4(p) => self.v4.remove(p),
            AnyPrefix::V6(p) => self.v6.remove(p),
        }
    }

    pub fn get(&self, p: AnyPrefix) -> Option<u32> {
        match p {
            AnyPrefix::V4(p) => self.v4.get(p),
            AnyPrefix::V6(p) => self.v6.get(p),
        }
    }
}

/// Parse "prefix value" lines: `#` starts a comment, blank lines are skipped, a missing value or
/// `-` means 0. The first bad line is reported with its 1-based number.
pub fn parse_routes(text: &str, strict: bool) -> Result<Vec<(AnyPrefix, u32)>, RouteError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| RouteError::Line {
            line: i + 1,
            message,
        };
        let mut fields = line.split_whitespace();
        let prefix = fields.next().unwrap_or("");
        let value = match fields.next() {
            None | Some("-") => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| bad(format!("value {v:?} is not a non-negative integer")))
                .and_then(|v| check_value(v).map_err(|e| bad(e.to_string())))?,
        };
        if let Some(extra) = fields.next() {
            return Err(bad(format!("unexpected field {extra:?}")));
        }
        let p = parse_prefix(prefix, strict).map_err(|e| bad(e.to_string()))?;
        out.push((p, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trip() {
        let mut t = RouteTable::default();
        let p = parse_prefix("10.0.0.0/8", true).unwrap();
        let q = parse_prefix("2001:db8::/32", true).unwrap();
        assert_eq!(t.insert(p, 1), None);
        assert_eq!(t.insert(q, 2), None);
        assert_eq!(t.insert(p, 3), Some(1));
        assert_eq!(t.v4.lookup(0x0a01_0203), Some(3));
        assert_eq!(t.v6.lookup(0x2001_0db8u128 << 96 | 5), Some(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(p), Some(3));
        assert_eq!(t.v4.lookup(0x0a01_0203), None);
        assert_eq!(t.get(q), Some(2));
    }

    #[test]
    fn route_files() {
        let routes =
            parse_routes("10.0.0.0/8 5\n# comment\n\n::/0 -\n192.0.2.0/24\n", true).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[1].1, 0);
        let e = parse_routes("10.0.0.0/8 1\n10.0.0.1/8 2\n", true).unwrap_err();
        assert_eq!(e.to_string(), r#"line 2: "10.0.0.1/8" has host bits set"#);
        assert!(parse_routes("10.0.0.0/8 4294967295\n", true).is_err());
        assert!(parse_routes("10.0.0.0/8 1 2\n", true).is_err());
        assert!(parse_routes("10.0.0.0/8 x\n", true).is_err());
        assert_eq!(
            parse_routes("10.0.0.1/8 7", false).unwrap()[0]
                .0
                .to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn bulk_and_small_batches_agree() {
        let mut rng = crate::rand::Rng::new(3);
        let routes: Vec<(Prefix<u32>, u32)> = (0..5000)
            .map(|i| {
                let len = 8 + rng.below(25) as u8;
                (
                    Prefix::new(rng.next_u64() as u32, len, false).unwrap(),
                    i % 77,
                )
            })
            .collect();
        let mut bulk = Family::<u32>::default();
        bulk.extend(&routes);
        let mut small = Family::<u32>::default();
        for chunk in routes.chunks(100) {
            small.extend(chunk);
        }
        for _ in 0..20_000 {
            let a = rng.next_u64() as u32;
            assert_eq!(bulk.lookup(a), small.lookup(a));
            assert_eq!(bulk.lookup(a), bulk.lookup_prefix(a).map(|(_, v)| v));
        }
    }
}
