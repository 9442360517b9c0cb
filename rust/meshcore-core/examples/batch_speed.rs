//! Core-only timing of the batch parser (no Python):
//! `cargo run --release -p meshcore-core --example batch_speed [N]`.
#![allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)] // timing arithmetic
use meshcore_core::wire::build::{ipv4_header, IpSpec, L4Spec, PacketSpec};
use meshcore_core::wire::ethernet::EthernetAddress;
use meshcore_core::wire::stack::{parse_batch, LinkType, ROW_LEN};
use meshcore_core::wire::tcp::TcpRepr;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let spec = PacketSpec {
        link: LinkType::Ethernet,
        eth_src: EthernetAddress([2, 0, 0, 0, 0, 1]),
        eth_dst: EthernetAddress([2, 0, 0, 0, 0, 2]),
        vlans: vec![],
        ip: IpSpec::V4(ipv4_header([10, 0, 0, 1], [10, 0, 0, 2])),
        l4: L4Spec::Tcp(TcpRepr {
            src_port: 1,
            dst_port: 2,
            ..TcpRepr::default()
        }),
        payload: vec![
            0;
            std::env::args()
                .nth(2)
                .and_then(|a| a.parse().ok())
                .unwrap_or(10)
        ],
    };
    let frame = spec.build().expect("valid spec");
    let buf: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * n)
        .collect();
    let offsets: Vec<i64> = (0..=n).map(|i| (i * frame.len()) as i64).collect();
    let mut out = vec![0u8; n * ROW_LEN];
    let modes: &[bool] = if std::env::args().nth(3).as_deref() == Some("fast") {
        &[false]
    } else {
        &[false, true]
    };
    for &verify in modes {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            parse_batch(&buf, &offsets, LinkType::Ethernet, verify, &mut out).expect("offsets");
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "verify={verify}: {:.1} ns/packet, {:.1} M packets/s",
            best * 1e9 / n as f64,
            n as f64 / best / 1e6
        );
    }
}
