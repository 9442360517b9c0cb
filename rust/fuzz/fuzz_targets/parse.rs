//! Any bytes, any link type: the stack parser, checksum verification and filling, the batch
//! parser and the TTL patch must return (Ok or Err) without panicking; batch rows must agree with
//! `parse`, and filled checksums must verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcore_core::wire::stack::{self, LinkType, Summary, ROW_LEN};

fuzz_target!(|data: &[u8]| {
    for link in [
        LinkType::Ethernet,
        LinkType::Ip,
        LinkType::Sll,
        LinkType::Sll2,
    ] {
        let single = stack::parse(data, link);
        if let Ok(s) = &single {
            let _ = stack::verify_checksums(data, s);
            assert!(s.l3_offset <= s.l4_offset && s.l4_offset <= s.payload_offset);
            assert!(s.payload_offset <= s.end && s.end <= data.len());
            // Recomputed checksums always verify.
            let mut filled = data.to_vec();
            stack::fill_checksums(&mut filled, s);
            let again = stack::parse(&filled, link).expect("checksums do not change structure");
            assert!(stack::verify_checksums(&filled, &again).is_ok());
            let mut copy = data.to_vec();
            if s.version != 0 {
                let before = stack::verify_checksums(&copy, s).is_ok();
                if stack::decrement_ttl(&mut copy, s.l3_offset).is_ok() && s.version == 4 {
                    // The incremental update must keep a valid IPv4 header checksum valid.
                    let s2 = stack::parse(&copy, link).expect("still parses after TTL decrement");
                    if before {
                        assert!(stack::verify_checksums(&copy, &s2).is_ok());
                    }
                }
            }
        }
        // The same bytes as a batch of one and as a batch split in two.
        let mid = data.len() / 2;
        let offsets = [0, mid as i64, data.len() as i64];
        let mut out = vec![0u8; 2 * ROW_LEN];
        stack::parse_batch(data, &offsets, link, true, &mut out).expect("valid offsets");
        let mut one = vec![0u8; ROW_LEN];
        stack::parse_batch(data, &[0, data.len() as i64], link, false, &mut one).expect("valid");
        let mut expect = [0u8; ROW_LEN];
        let mut s = Summary::default();
        let code = match stack::parse_into(data, link, &mut s) {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        stack::encode_row(&s, code, &mut expect);
        assert_eq!(&one[..], &expect[..]);
    }
});
