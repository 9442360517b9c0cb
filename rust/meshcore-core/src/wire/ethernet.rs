//! Ethernet II frames with 802.1Q / 802.1ad (QinQ) VLAN tags, and the Linux cooked (SLL) header.
//!
//! Layout: `dst(6) src(6) [tpid(2) tci(2)]* ethertype(2)`. A TPID of 0x8100 (802.1Q), 0x88a8 (802.1ad)
//! or 0x9100 (pre-standard QinQ) starts a tag; at most [`MAX_VLAN_TAGS`] tags are walked.

use super::{be16, put16, Error, ErrorKind, Layer, Result};
use core::fmt;

pub const HEADER_LEN: usize = 14;
pub const TAG_LEN: usize = 4;
pub const MAX_VLAN_TAGS: usize = 8;
/// Linux cooked capture v1 header length (pcap link type 113).
pub const SLL_HEADER_LEN: usize = 16;
/// Linux cooked capture v2 header length (pcap link type 276, `tcpdump -i any` today).
pub const SLL2_HEADER_LEN: usize = 20;

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
}

/// Whether an EtherType value is a VLAN tag protocol identifier.
#[inline]
pub fn is_vlan_tpid(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ || t == ethertype::QINQ_OLD
}

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// Parse `aa:bb:cc:dd:ee:ff` (or with `-`).
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return None;
            }
            out[n] = u8::from_str_radix(part, 16).ok()?;
            n += 1;
        }
        (n == 6).then_some(EthernetAddress(out))
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A zero-copy view of an Ethernet II header (the untagged part).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::truncated(Layer::Ethernet, HEADER_LEN, len));
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn dst(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[0..6]);
        EthernetAddress(a)
    }

    pub fn src(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[6..12]);
        EthernetAddress(a)
    }

    /// The first EtherType / TPID field.
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 12)
    }
}

/// One VLAN tag: the TPID that introduced it and its tag control information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

impl VlanTag {
    /// VLAN identifier (12 bits).
    pub fn vid(self) -> u16 {
        self.tci & 0x0fff
    }
    /// Priority code point (3 bits).
    pub fn pcp(self) -> u8 {
        (self.tci >> 13) as u8
    }
    /// Drop eligible indicator.
    pub fn dei(self) -> bool {
        self.tci & 0x1000 != 0
    }
}

/// The Ethernet header with its tags, as parsed or to be emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: EthernetAddress,
    pub src: EthernetAddress,
    /// Outermost tag first.
    pub vlans: Vec<VlanTag>,
    /// The EtherType of the payload after all tags.
    pub ethertype: u16,
}

/// The result of walking the link header: where the network layer starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkInfo {
    pub ethertype: u16,
    pub l3_offset: usize,
    pub vlan_count: usize,
}

/// Walk an Ethernet header and its VLAN tags, storing up to `tags.len()` TCIs.
#[inline]
pub fn walk(data: &[u8], tags: &mut [u16]) -> Result<LinkInfo> {
    if data.len() < HEADER_LEN {
        return Err(Error::truncated(Layer::Ethernet, HEADER_LEN, data.len()));
    }
    let mut et = be16(data, 12);
    let mut off = HEADER_LEN;
    let mut n = 0;
    while is_vlan_tpid(et) {
        if n == MAX_VLAN_TAGS {
            return Err(Error::new(
                Layer::Vlan,
                ErrorKind::TooManyHeaders,
                n + 1,
                MAX_VLAN_TAGS,
            ));
        }
        if data.len() < off + TAG_LEN {
            return Err(Error::truncated(Layer::Vlan, off + TAG_LEN, data.len()));
        }
        if let Some(slot) = tags.get_mut(n) {
            *slot = be16(data, off);
        }
        et = be16(data, off + 2);
        off += TAG_LEN;
        n += 1;
    }
    Ok(LinkInfo {
        ethertype: et,
        l3_offset: off,
        vlan_count: n,
    })
}

/// Walk a Linux cooked (SLL v1) header: the protocol field sits at bytes 14..16.
pub fn walk_sll(data: &[u8]) -> Result<LinkInfo> {
    if data.len() < SLL_HEADER_LEN {
        return Err(Error::truncated(Layer::Sll, SLL_HEADER_LEN, data.len()));
    }
    Ok(LinkInfo {
        ethertype: be16(data, 14),
        l3_offset: SLL_HEADER_LEN,
        vlan_count: 0,
    })
}

/// Walk a Linux cooked v2 (SLL2) header: the protocol field sits at bytes 0..2.
pub fn walk_sll2(data: &[u8]) -> Result<LinkInfo> {
    if data.len() < SLL2_HEADER_LEN {
        return Err(Error::truncated(Layer::Sll, SLL2_HEADER_LEN, data.len()));
    }
    Ok(LinkInfo {
        ethertype: be16(data, 0),
        l3_offset: SLL2_HEADER_LEN,
        vlan_count: 0,
    })
}

impl EthernetRepr {
    pub fn parse(data: &[u8]) -> Result<(EthernetRepr, usize)> {
        let frame = EthernetFrame::new_checked(data)?;
        let mut tcis = [0u16; MAX_VLAN_TAGS];
        let info = walk(data, &mut tcis)?;
        let vlans = (0..info.vlan_count)
            .map(|i| VlanTag {
                tpid: be16(data, 12 + i * TAG_LEN),
                tci: tcis[i],
            })
            .collect();
        Ok((
            EthernetRepr {
                dst: frame.dst(),
                src: frame.src(),
                vlans,
                ethertype: info.ethertype,
            },
            info.l3_offset,
        ))
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + TAG_LEN * self.vlans.len()
    }

    /// Write the header into the front of `buf` (which must hold `header_len()` bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        if buf.len() < self.header_len() {
            return;
        }
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        let mut off = 12;
        for tag in &self.vlans {
            put16(buf, off, tag.tpid);
            put16(buf, off + 2, tag.tci);
            off += TAG_LEN;
        }
        put16(buf, off, self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_walk() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x20, 0xc8, 0x08, 0x00]);
        let mut tags = [0u16; 2];
        let info = walk(&f, &mut tags).unwrap();
        assert_eq!(info.ethertype, ethertype::IPV4);
        assert_eq!(info.l3_offset, 22);
        assert_eq!(info.vlan_count, 2);
        assert_eq!(tags, [100, 0x20c8]);
        let (repr, off) = EthernetRepr::parse(&f).unwrap();
        assert_eq!(off, 22);
        let mut out = vec![0u8; repr.header_len()];
        repr.emit(&mut out);
        assert_eq!(out, f);
    }

    #[test]
    fn truncated_tag() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00]);
        let e = walk(&f, &mut []).unwrap_err();
        assert_eq!(e.layer, Layer::Vlan);
        assert_eq!(e.kind, ErrorKind::Truncated);
    }

    #[test]
    fn mac_parse_display() {
        let m = EthernetAddress::parse("02:00:5e:10:00:ff").unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:ff");
        assert!(EthernetAddress::parse("02:00:5e:10:00").is_none());
        assert!(EthernetAddress::parse("02:00:5e:10:00:fff").is_none());
    }
}
