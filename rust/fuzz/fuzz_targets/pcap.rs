//! Any bytes as a capture file: the scanner returns records or an error, never panics, and the
//! records it returns are consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcore_core::pcap;

fuzz_target!(|data: &[u8]| {
    if let Ok(cap) = pcap::scan(data) {
        let n = cap.offsets.len() - 1;
        assert_eq!(cap.timestamps_ns.len(), n);
        assert_eq!(cap.wire_lengths.len(), n);
        assert_eq!(cap.interfaces.len(), n);
        assert_eq!(*cap.offsets.last().unwrap() as usize, cap.data.len());
        assert!(cap.offsets.windows(2).all(|w| w[0] <= w[1]));
        assert!(cap
            .interfaces
            .iter()
            .all(|&i| (i as usize) < cap.linktypes.len()));
    }
});
