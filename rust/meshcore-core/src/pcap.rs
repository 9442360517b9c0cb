//! Capture files: classic pcap (both byte orders, micro- and nanosecond magic) and pcapng
//! (sections of either byte order, several interfaces, `if_tsresol`, enhanced / simple / obsolete
//! packet blocks). This module only finds records in bytes already read; it does no I/O.
//!
//! Record data is copied into one contiguous buffer with N + 1 offsets, the batch form the wire
//! layer's `parse_batch` takes.

use core::fmt;

/// pcap link types the wire layer understands.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_BSD: u32 = 12;
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
}

/// A malformed capture file, with the byte offset of the bad record or block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture: {} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for CaptureError {}

fn fail<T>(offset: usize, message: impl Into<String>) -> Result<T, CaptureError> {
    Err(CaptureError {
        offset,
        message: message.into(),
    })
}

/// All records of a capture, packed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Captured bytes of every record, back to back.
    pub data: Vec<u8>,
    /// N + 1 offsets into `data`.
    pub offsets: Vec<i64>,
    /// Timestamps in nanoseconds since the Unix epoch.
    pub timestamps_ns: Vec<i64>,
    /// Original length on the wire of each record (>= captured length when snapped).
    pub wire_lengths: Vec<u32>,
    /// Index into `linktypes` of each record's interface.
    pub interfaces: Vec<u32>,
    /// Link type of each interface (one for classic pcap).
    pub linktypes: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    big: bool,
}

impl Reader<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.data.get(at..at + 2)?;
        let a = [b[0], b[1]];
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

/// Scan a capture file held in memory.
pub fn scan(data: &[u8]) -> Result<Capture, CaptureError> {
    let Some(m) = data.get(0..4) else {
        return fail(0, "file too short for a capture header");
    };
    let le = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
    let be = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
    match (le, be) {
        (PCAP_US | PCAP_NS, _) => scan_pcap(data, false, le == PCAP_NS),
        (_, PCAP_US | PCAP_NS) => scan_pcap(data, true, be == PCAP_NS),
        (PCAPNG_SHB, _) => scan_pcapng(data),
        _ => fail(0, format!("unknown magic number 0x{be:08x}")),
    }
}

impl Capture {
    /// Room for a file of `file_len` bytes whose records average about `typical` bytes.
    fn with_capacity(file_len: usize, typical: usize) -> Capture {
        let records = file_len / typical + 1;
        let mut offsets = Vec::with_capacity(records + 1);
        offsets.push(0);
        Capture {
            data: Vec::with_capacity(file_len),
            offsets,
            timestamps_ns: Vec::with_capacity(records),
            wire_lengths: Vec::with_capacity(records),
            interfaces: Vec::with_capacity(records),
            linktypes: Vec::new(),
        }
    }

    fn push(&mut self, rec: &[u8], ts_ns: i64, wire_len: u32, iface: u32) {
        self.data.extend_from_slice(rec);
        self.offsets
            .push(i64::try_from(self.data.len()).unwrap_or(i64::MAX));
        self.timestamps_ns.push(ts_ns);
        self.wire_lengths.push(wire_len);
        self.interfaces.push(iface);
    }
}

fn scan_pcap(data: &[u8], big: bool, nanos: bool) -> Result<Capture, CaptureError> {
    let r = Reader { data, big };
    if data.len() < 24 {
        return fail(0, "truncated pcap file header (24 bytes needed)");
    }
    let snaplen = r.u32(16).unwrap_or(0);
    // The top bits of the link-type field carry the FCS length; the link type is the low 16 bits.
    let link = r.u32(20).unwrap_or(0) & 0xffff;
    let mut cap = Capture::with_capacity(data.len(), 64);
    cap.linktypes.push(link);
    let mut at = 24;
    while at < data.len() {
        let (Some(sec), Some(frac), Some(incl), Some(orig)) =
            (r.u32(at), r.u32(at + 4), r.u32(at + 8), r.u32(at + 12))
        else {
            return fail(at, "truncated pcap record header");
        };
        let incl = incl as usize;
        if snaplen > 0 && incl > (snaplen as usize).max(262_144) {
            return fail(
                at,
                format!("record length {incl} exceeds the snapshot length {snaplen}"),
            );
        }
        let Some(rec) = data.get(at + 16..at + 16 + incl) else {
            return fail(at, format!("truncated pcap record: {incl} bytes announced"));
        };
        let frac_ns = if nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        cap.push(rec, i64::from(sec) * 1_000_000_000 + frac_ns, orig, 0);
        at += 16 + incl;
    }
    Ok(cap)
}

/// Per-interface state in a pcapng section.
#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Global index in `Capture::linktypes`.
    global: u32,
    /// Timestamp units per second, as (base, exponent) decoded to a divisor/multiplier on ns.
    tsresol: TsResol,
}

#[derive(Clone, Copy)]
enum TsResol {
    Pow10(u32),
    Pow2(u32),
}

impl TsResol {
    fn to_ns(self, ticks: u64) -> i64 {
        let ns = match self {
            TsResol::Pow10(e) if e <= 9 => u128::from(ticks) * 10u128.pow(9 - e),
            TsResol::Pow10(e) => u128::from(ticks) / 10u128.pow((e - 9).min(38)),
            TsResol::Pow2(e) => (u128::from(ticks) * 1_000_000_000) >> e.min(127),
        };
        i64::try_from(ns).unwrap_or(i64::MAX)
    }
}

fn scan_pcapng(data: &[u8]) -> Result<Capture, CaptureError> {
    let mut cap = Capture::with_capacity(data.len(), 80);
    let mut r = Reader { data, big: false };
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data.len() - at < 12 {
            return fail(at, "truncated pcapng block header");
        }
        let raw_type = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        if raw_type == PCAPNG_SHB {
            // A new section: its byte-order magic decides the order of everything in it.
            let Some(bom) = data.get(at + 8..at + 12) else {
                return fail(at, "truncated section header block");
            };
            r.big = match u32::from_le_bytes([bom[0], bom[1], bom[2], bom[3]]) {
                PCAPNG_BOM => false,
                x if x.swap_bytes() == PCAPNG_BOM => true,
                _ => return fail(at + 8, "bad byte-order magic in section header block"),
            };
            ifaces.clear();
        }
        let btype = r.u32(at).unwrap_or(0);
        let blen = r.u32(at + 4).unwrap_or(0) as usize;
        if blen < 12 || blen % 4 != 0 || at + blen > data.len() {
            return fail(at, format!("bad pcapng block length {blen}"));
        }
        if r.u32(at + blen - 4) != Some(blen as u32) {
            return fail(at, "pcapng block trailing length does not match");
        }
        let body = at + 8..at + blen - 4;
        match btype {
            PCAPNG_SHB => {}
            1 => {
                // Interface description: linktype(2) reserved(2) snaplen(4) options.
                if body.len() < 8 {
                    return fail(at, "truncated interface description block");
                }
                let linktype = u32::from(r.u16(body.start).unwrap_or(0));
                let mut tsresol = TsResol::Pow10(6);
                let mut o = body.start + 8;
                while o + 4 <= body.end {
                    let code = r.u16(o).unwrap_or(0);
                    let olen = usize::from(r.u16(o + 2).unwrap_or(0));
                    if o + 4 + olen > body.end {
                        return fail(o, "pcapng option runs past its block");
                    }
                    if code == 0 {
                        break;
                    }
                    if code == 9 && olen >= 1 {
                        let v = data[o + 4];
                        tsresol = if v & 0x80 == 0 {
                            TsResol::Pow10(u32::from(v))
                        } else {
                            TsResol::Pow2(u32::from(v & 0x7f))
                        };
                    }
                    o += 4 + olen.div_ceil(4) * 4;
                }
                let global = cap.linktypes.len() as u32;
                cap.linktypes.push(linktype);
                ifaces.push(Iface {
                    linktype,
                    global,
                    tsresol,
                });
            }
            2 | 6 => {
                // Obsolete packet block: iface(2) drops(2); enhanced: iface(4). Then ts(8) caplen orig.
                if body.len() < 20 {
                    return fail(at, "truncated packet block");
                }
                let iface_id = if btype == 6 {
                    r.u32(body.start).unwrap_or(0)
                } else {
                    u32::from(r.u16(body.start).unwrap_or(0))
                } as usize;
                let Some(iface) = ifaces.get(iface_id).copied() else {
                    return fail(
                        at,
                        format!("packet block names unknown interface {iface_id}"),
                    );
                };
                let hi = u64::from(r.u32(body.start + 4).unwrap_or(0));
                let lo = u64::from(r.u32(body.start + 8).unwrap_or(0));
                let caplen = r.u32(body.start + 12).unwrap_or(0) as usize;
                let orig = r.u32(body.start + 16).unwrap_or(0);
                let start = body.start + 20;
                if start + caplen > body.end {
                    return fail(
                        at,
                        format!("packet data of {caplen} bytes runs past its block"),
                    );
                }
                let _ = iface.linktype;
                cap.push(
                    &data[start..start + caplen],
                    iface.tsresol.to_ns((hi << 32) | lo),
                    orig,
                    iface.global,
                );
            }
            3 => {
                // Simple packet block: orig(4) then data up to the block end (interface 0).
                let Some(iface) = ifaces.first().copied() else {
                    return fail(at, "simple packet block before any interface");
                };
                if body.len() < 4 {
                    return fail(at, "truncated simple packet block");
                }
                let orig = r.u32(body.start).unwrap_or(0);
                let avail = body.end - (body.start + 4);
                let caplen = (orig as usize).min(avail);
                cap.push(
                    &data[body.start + 4..body.start + 4 + caplen],
                    0,
                    orig,
                    iface.global,
                );
            }
            _ => {}
        }
        at += blen;
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_le(nanos: bool, recs: &[(&[u8], u32, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(if nanos { PCAP_NS } else { PCAP_US }).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (d, s, f) in recs {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&f.to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    #[test]
    fn classic_records() {
        let f = pcap_le(false, &[(b"abc", 1, 5), (b"de", 2, 0)]);
        let c = scan(&f).unwrap();
        assert_eq!(c.data, b"abcde");
        assert_eq!(c.offsets, vec![0, 3, 5]);
        assert_eq!(c.timestamps_ns, vec![1_000_005_000, 2_000_000_000]);
        assert_eq!(c.linktypes, vec![1]);
        let f = pcap_le(true, &[(b"abc", 1, 5)]);
        assert_eq!(scan(&f).unwrap().timestamps_ns, vec![1_000_000_005]);
    }

    #[test]
    fn truncated_record_names_offset() {
        let mut f = pcap_le(false, &[(b"abcdef", 1, 5)]);
        f.truncate(f.len() - 2);
        let e = scan(&f).unwrap_err();
        assert_eq!(e.offset, 24);
    }

    #[test]
    fn empty_simple_packet_block_is_an_error() {
        let block = |t: u32, body: &[u8]| {
            let n = (12 + body.len()) as u32;
            let mut v = t.to_le_bytes().to_vec();
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(body);
            v.extend_from_slice(&n.to_le_bytes());
            v
        };
        let mut shb_body = PCAPNG_BOM.to_le_bytes().to_vec();
        shb_body.extend_from_slice(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut f = block(PCAPNG_SHB, &shb_body);
        f.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
        f.extend(block(3, &[]));
        assert!(scan(&f)
            .unwrap_err()
            .message
            .contains("simple packet block"));
        f.extend(block(6, &[0; 20]));
        assert!(scan(&f).is_err());
    }

    #[test]
    fn resolutions() {
        assert_eq!(TsResol::Pow10(6).to_ns(3), 3000);
        assert_eq!(TsResol::Pow10(9).to_ns(3), 3);
        assert_eq!(TsResol::Pow2(10).to_ns(1024), 1_000_000_000);
    }
}
