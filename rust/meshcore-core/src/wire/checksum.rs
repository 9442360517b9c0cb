//! The Internet checksum (RFC 1071), its pseudo-headers, and incremental update (RFC 1624).
//!
//! [`sum`] returns the unfolded 32-bit-carry accumulator so callers can chain pieces (pseudo-header,
//! header, payload); [`fold`] reduces it and [`finish`] complements it. A region verifies when the
//! checksum over it, checksum field included, folds to `0xffff`.

use super::be16;

/// Ones'-complement accumulation of `data` as big-endian 16-bit words into `acc`.
/// An odd trailing byte is padded with zero, as RFC 1071 says. The result is not folded.
#[inline]
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut acc = acc;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(be16(rest, i));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Fold an accumulator to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for an accumulator: the complement of the folded sum.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// Checksum of a standalone byte region (the IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// Pseudo-header accumulator for IPv4 (RFC 793 / 768): src, dst, zero, protocol, L4 length.
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u32) -> u64 {
    let acc = sum(src, 0);
    let acc = sum(dst, acc);
    acc + u64::from(proto) + u64::from(l4_len)
}

/// Pseudo-header accumulator for IPv6 (RFC 8200 section 8.1): src, dst, upper-layer length, next header.
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u64 {
    let acc = sum(src, 0);
    let acc = sum(dst, acc);
    acc + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(proto)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changes from
/// `old_word` to `new_word`: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 it never yields 0x0000 for
/// a non-zero region, which is what routers must produce.
#[inline]
pub fn update16(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let acc = u64::from(!old_checksum) + u64::from(!old_word) + u64::from(new_word);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is 0xddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        for _ in 0..64 {
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] = hdr[8].wrapping_sub(1);
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let inc = update16(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
            hdr[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(inc, checksum(&hdr));
            hdr[10..12].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(fold(sum(&hdr, 0)), 0xffff);
        }
    }
}
