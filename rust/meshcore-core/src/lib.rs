//! meshcore-core: the data-plane primitives of container networks and service meshes, in pure Rust.
//!
//! This crate knows nothing about Python; `meshcore-py` wraps it. Map of the crate:
//!
//! - [`wire`]: zero-copy views over packet bytes (Ethernet, 802.1Q/QinQ, IPv4, IPv6 with extension
//!   headers, TCP, UDP, ICMP, ICMPv6), parsed representations that can be emitted again, the
//!   Internet checksum, and the one-pass stack parser behind `Packet.parse` and `parse_batch`.
//! - [`pcap`]: a scanner for pcap and pcapng capture files (records only, no I/O).
//! - [`route`]: prefixes, the routing information base and the Poptrie longest-prefix-match
//!   table compiled from it.
//! - [`classify`]: 5-tuple classification rules, ClassBench files and the reference first-match
//!   scan (the fast classifier is being built on them).
//! - [`queue`]: token buckets, GCRA, shapers, colour meters, RED and CoDel, with time passed in
//!   as integer nanoseconds and rates as exact rationals.
//! - [`balance`]: load balancers (weighted round robin, random, P2C least request, P2C peak-EWMA,
//!   ring hash, maglev, bounded loads) with health, panic, slow start and endpoint-set updates;
//!   time passed in as [`queue::Nanos`], randomness from a seed.
//! - [`rand`]: a seeded PRNG for reproducible simulations and tests.
//!
//! Invariants kept everywhere: no function panics on any input bytes (the fuzz targets in
//! `rust/fuzz` check this), and no function reads a clock or a global random source.

pub mod balance;
pub mod classify;
pub mod pcap;
pub mod queue;
pub mod rand;
pub mod route;
pub mod wire;
