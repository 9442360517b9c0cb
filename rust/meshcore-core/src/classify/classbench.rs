//! ClassBench (Taylor and Turner, ToN 2007) filter and trace files.
//!
//! A filter line: `@sip/len<TAB>dip/len<TAB>splo : sphi<TAB>dplo : dphi<TAB>0xPP/0xMM<TAB>flags`,
//! IPv4 only. Port ranges are inclusive; the protocol is a value and a mask in hex; the flags
//! field (and anything after it) is ignored, as DPDK's `test-acl` and the usual harnesses do.
//! Rule id and priority are the rule's 0-based index in the file, so the answer for a packet is
//! the first rule that matches. Host bits in a prefix are cleared.
//!
//! A trace line: `sip dip sport dport proto ...` in decimal; the columns after the fifth (a
//! flags encoding and the index of the rule the header was generated from, which is not the
//! answer) are ignored.

use super::{port_range, proto_match, Key, Rule};
use crate::route::{parse_prefix, AnyPrefix, Prefix};
use core::fmt;

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

fn v4_prefix(text: &str) -> Result<Prefix<u32>, String> {
    match parse_prefix(text, false) {
        Ok(AnyPrefix::V4(p)) => Ok(p),
        Ok(AnyPrefix::V6(_)) => Err(format!("{text:?}: ClassBench rules are IPv4")),
        Err(e) => Err(e.to_string()),
    }
}

fn hex_u8(text: &str) -> Result<u8, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| format!("{text:?} is not a hex byte like 0x06"))?;
    u8::from_str_radix(digits, 16).map_err(|_| format!("{text:?} is not a hex byte like 0x06"))
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("{what} {text:?} is not a decimal number"))
}

/// One filter line (without the leading `@`) as a rule with the given index.
fn filter(fields: &[&str], index: u32) -> Result<Rule<u32>, String> {
    if fields.len() < 9 {
        return Err(format!(
            "expected 'sip/len dip/len lo : hi lo : hi 0xPP/0xMM', found {} fields",
            fields.len()
        ));
    }
    let src = v4_prefix(fields[0])?;
    let dst = v4_prefix(fields[1])?;
    if fields[3] != ":" || fields[6] != ":" {
        return Err("port ranges must be written 'lo : hi'".to_string());
    }
    let sport = port_range(
        number(fields[2], "source port")?,
        number(fields[4], "source port")?,
    )
    .map_err(|e| format!("source {e}"))?;
    let dport = port_range(
        number(fields[5], "destination port")?,
        number(fields[7], "destination port")?,
    )
    .map_err(|e| format!("destination {e}"))?;
    let (value, mask) = fields[8]
        .split_once('/')
        .ok_or_else(|| format!("protocol {:?} is not 0xPP/0xMM", fields[8]))?;
    let (proto_value, proto_mask) =
        proto_match(hex_u8(value)?, hex_u8(mask)?).map_err(|e| e.to_string())?;
    Ok(Rule {
        id: index,
        priority: index,
        seq: u64::from(index),
        src,
        dst,
        sport,
        dport,
        proto_value,
        proto_mask,
    })
}

/// Read a filter file. Blank lines are skipped; every other line must be a filter.
pub fn parse_filters(text: &str) -> Result<Vec<Rule<u32>>, ParseError> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| ParseError {
            line: n + 1,
            message,
        };
        let body = line
            .strip_prefix('@')
            .ok_or_else(|| err("a filter line starts with '@'".to_string()))?;
        let index = u32::try_from(rules.len()).map_err(|_| err("too many rules".to_string()))?;
        let fields: Vec<&str> = body.split_whitespace().collect();
        rules.push(filter(&fields, index).map_err(err)?);
    }
    Ok(rules)
}

/// Read a trace file into packet keys. Blank lines are skipped.
pub fn parse_trace(text: &str) -> Result<Vec<Key<u32>>, ParseError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let key = (|| {
            if fields.len() < 5 {
                return Err(format!(
                    "expected 'sip dip sport dport proto', found {} fields",
                    fields.len()
                ));
            }
            let field = |i: usize, what: &str, max: u64| {
                let v = number(fields[i], what)?;
                if v > max {
                    return Err(format!("{what} {v} is above {max}"));
                }
                Ok(v)
            };
            Ok(Key {
                src: field(0, "source address", u64::from(u32::MAX))? as u32,
                dst: field(1, "destination address", u64::from(u32::MAX))? as u32,
                sport: field(2, "source port", 65535)? as u16,
                dport: field(3, "destination port", 65535)? as u16,
                proto: field(4, "protocol", 255)? as u8,
            })
        })()
        .map_err(|message| ParseError {
            line: n + 1,
            message,
        })?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::linear_first_match;

    const FILTERS: &str =
        "@237.73.3.4/32\t67.236.63.210/32\t0 : 65535\t1711 : 1711\t0x06/0xFF\t0x0000/0x0200\t\n\
        @10.0.0.0/8\t0.0.0.0/0\t1024 : 2047\t80 : 80\t0x11/0xff\t0x0000/0x0000\t\n\
        \n\
        @10.1.2.3/8\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n";

    #[test]
    fn filters_and_traces() {
        let rules = parse_filters(FILTERS).unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!((rules[2].id, rules[2].priority), (2, 2));
        assert_eq!(rules[2].src.to_string(), "10.0.0.0/8"); // host bits cleared
        assert_eq!((rules[1].proto_value, rules[1].proto_mask), (17, 0xff));
        let trace = parse_trace(
            "3980985092\t1139556306\t0\t1711\t6\t0\t0\n\
             167772161\t5\t1500\t80\t17\t4294967295\t1\n\
             167772161\t5\t1500\t80\t6\t0\t1\n\
             1\t2\t3\t4\t5\n",
        )
        .unwrap();
        let answers: Vec<Option<u32>> = trace
            .iter()
            .map(|k| linear_first_match(&rules, k))
            .collect();
        assert_eq!(answers, [Some(0), Some(1), Some(2), None]);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = [
            (
                "@10.0.0.0/8\t0.0.0.0/0\t80 : 79\t0 : 65535\t0x06/0xFF\n",
                "inverted",
            ),
            (
                "@10.0.0.0/33\t0.0.0.0/0\t0 : 1\t0 : 65535\t0x06/0xFF\n",
                "length",
            ),
            (
                "@10.0.0.0/8\t0.0.0.0/0\t0 : 70000\t0 : 65535\t0x06/0xFF\n",
                "65535",
            ),
            (
                "@10.0.0.0/8\t0.0.0.0/0\t0 : 1\t0 : 65535\t0x16/0x0F\n",
                "mask",
            ),
            (
                "@10.0.0.0/8\t0.0.0.0/0\t0 : 1\t0 : 65535\ttcp\n",
                "0xPP/0xMM",
            ),
            ("@10.0.0.0/8\t0.0.0.0/0\t0 : 1\n", "fields"),
            (
                "10.0.0.0/8\t0.0.0.0/0\t0 : 1\t0 : 65535\t0x06/0xFF\n",
                "'@'",
            ),
            (
                "@2001:db8::/32\t0.0.0.0/0\t0 : 1\t0 : 65535\t0x06/0xFF\n",
                "IPv4",
            ),
        ];
        for (line, what) in bad {
            let text = format!("@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\n{line}");
            let e = parse_filters(&text).unwrap_err();
            assert_eq!(e.line, 2, "{line}");
            assert!(e.to_string().contains(what), "{e} lacks {what}");
        }
        let e = parse_trace("1 2 3 4 5\n1 2 3 70000 6\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("destination port"));
        assert_eq!(parse_trace("1 2 3\n").unwrap_err().line, 1);
        assert!(parse_trace("1 2 3 4 x\n")
            .unwrap_err()
            .message
            .contains("protocol"));
    }
}
