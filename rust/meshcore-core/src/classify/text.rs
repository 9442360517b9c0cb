//! A rule format for people, in the spirit of ipfw and pf: one rule per line.
//!
//! ```text
//! # web servers
//! allow tcp from 10.0.0.0/8 to any port 80,443
//! deny udp from any port 1024-65535 to 192.168.1.0/24 port 53
//! allow proto 0x06/0xff from 2001:db8::/32 to any id 7 priority 3
//! deny from any to any
//! ```
//!
//! The grammar (`#` starts a comment; blank lines are skipped):
//!
//! ```text
//! rule      = action [protocol] "from" addresses [ports] "to" addresses [ports] [options]
//! action    = a word: a letter or '_', then letters, digits, '_', '-' or '.'; not a keyword
//! protocol  = ["proto"] list of: name | number | value/mask | "any" | "ip"
//! addresses = list of: "any" | prefix | address
//! ports     = "port" list of: N | N-M | "any"
//! options   = "id" N and "priority" P, each at most once, in either order
//! list      = item | item,item,... | { item, item, ... }   (commas between braces optional)
//! ```
//!
//! Meaning, and the invariants the parser keeps:
//!
//! - The action word is kept with the rule; the classifier does not interpret it.
//! - A protocol number is decimal or `0x` hex in 0..=255; `value/mask` matches a packet when
//!   `proto & mask == value` (bits of `value` outside `mask` are an error); `any` and `ip`
//!   match every protocol, as does leaving the protocol out; names are those of
//!   [`PROTOCOLS`], in any case.
//! - An address is `any`, a prefix (host bits past the length are an error) or a bare address
//!   (a host). Port ranges are inclusive; without `port`, any port. Packets without ports
//!   (ICMP, non-first fragments) are classified with both ports 0.
//! - Lists expand into the alternatives ([`Match`]es) of one rule: every combination of
//!   protocol, source, source ports, destination and destination ports, at most
//!   [`MAX_ALTERNATIVES`]. Combinations of an IPv4 source with an IPv6 destination (or the
//!   other way round) are left out; a rule with no combination left is an error. The count
//!   is checked before any combination is made, and a list of more than [`MAX_ALTERNATIVES`]
//!   items is refused as soon as it passes the limit, so a long line costs time and memory
//!   in proportion to its length, never to the product of its lists.
//! - `id` and `priority` default to the rule's 0-based index among the rules of the text
//!   (comments and blank lines do not count). A lower priority wins; among equal priorities
//!   the rule written first wins. Ids are unique within the text.
//! - Every error names the 1-based line and what is wrong with it.

use super::classbench::ParseError;
use super::classifier::{Match, Spec};
use super::{port_range, proto_match};
use crate::route::{parse_prefix, AnyPrefix};
use std::collections::HashMap;

/// The protocol names the format (and the Python API) knows, with their IANA numbers.
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ipv4", 4),
    ("tcp", 6),
    ("egp", 8),
    ("udp", 17),
    ("dccp", 33),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmp6", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("eigrp", 88),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
    ("udplite", 136),
    ("mpls-in-ip", 137),
];

/// The most alternatives one rule's lists may expand into.
pub const MAX_ALTERNATIVES: usize = 4096;

/// Words that cannot be actions (a rule starting with one has forgotten its action).
const KEYWORDS: &[&str] = &["from", "to", "port", "proto", "id", "priority", "any"];

/// One rule read from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRule {
    /// 1-based line number.
    pub line: usize,
    pub action: String,
    pub spec: Spec,
}

/// The number of a protocol name (any case), if it is one of [`PROTOCOLS`].
pub fn protocol_number(name: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// A number in decimal or `0x` hex.
fn number(text: &str) -> Option<u64> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    let (digits, radix) = hex.map_or((text, 10), |h| (h, 16));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn byte(text: &str, what: &str) -> Result<u8, String> {
    let v = number(text).ok_or_else(|| format!("{what} {text:?} is not a number"))?;
    u8::try_from(v).map_err(|_| format!("{what} {text} is outside 0..=255"))
}

/// A protocol as `(value, mask)`: a name, a number, `value/mask`, or `any` / `ip` (every
/// protocol, `(0, 0)`).
pub fn parse_protocol(text: &str) -> Result<(u8, u8), String> {
    if text.eq_ignore_ascii_case("any") || text.eq_ignore_ascii_case("ip") {
        return Ok((0, 0));
    }
    if let Some((v, m)) = text.split_once('/') {
        let (v, m) = (byte(v, "protocol")?, byte(m, "protocol mask")?);
        return proto_match(v, m).map_err(|e| e.to_string());
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok((byte(text, "protocol")?, 0xff));
    }
    protocol_number(text)
        .map(|v| (v, 0xff))
        .ok_or_else(|| format!("unknown protocol name {text:?}"))
}

/// An inclusive port range: `N`, `N-M` or `any`.
fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    if text.eq_ignore_ascii_case("any") {
        return Ok((0, u16::MAX));
    }
    // A malformed end ("-5", "5-", "8o-9") is reported with the token as written.
    let port = |t: &str| {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "port {text:?} is not a decimal number or a range N-M"
            ));
        }
        t.parse::<u64>()
            .map_err(|_| format!("port {t} is outside 0..=65535"))
    };
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (port(lo)?, port(hi)?);
    port_range(lo, hi).map_err(|e| e.to_string())
}

fn parse_address(text: &str) -> Result<Option<AnyPrefix>, String> {
    if text.eq_ignore_ascii_case("any") {
        return Ok(None);
    }
    parse_prefix(text, true)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Split a line (comment removed) into words and the punctuation `{`, `}` and `,`.
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        let punct = matches!(c, '{' | '}' | ',');
        if c.is_whitespace() || punct {
            if let Some(s) = start.take() {
                out.push(&line[s..i]);
            }
            if punct {
                out.push(&line[i..=i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

fn is_punct(t: &str) -> bool {
    matches!(t, "{" | "}" | ",")
}

/// The words of one rule, read left to right.
struct Words<'a> {
    toks: Vec<&'a str>,
    at: usize,
}

impl<'a> Words<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.at).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.at += usize::from(t.is_some());
        t
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, word: &str, after: &str) -> Result<(), String> {
        if self.eat(word) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(t) => format!("expected '{word}' {after}, found {t:?}"),
            None => format!("expected '{word}' {after}, found the end of the line"),
        })
    }

    /// One item, or a list `a,b,c` or `{a, b, c}`, each item read by `item`.
    fn list<T>(
        &mut self,
        what: &str,
        item: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let mut out = Vec::new();
        // A keyword where an item belongs means the list ended early ("from 10.0.0.0/8, to").
        let word = |w: Option<&'a str>| match w {
            Some(t) if !is_punct(t) && (t.eq_ignore_ascii_case("any") || !is_keyword(t)) => Ok(t),
            Some(t) => Err(format!("expected {what}, found {t:?}")),
            None => Err(format!("expected {what}, found the end of the line")),
        };
        if self.eat("{") {
            loop {
                match self.next() {
                    Some("}") => break,
                    Some(",") => {}
                    None => return Err(format!("a list of {what} is missing its closing '}}'")),
                    t => {
                        Self::room(&out, what)?;
                        out.push(item(word(t)?)?);
                    }
                }
            }
            if out.is_empty() {
                return Err(format!("an empty list of {what}"));
            }
        } else {
            out.push(item(word(self.next())?)?);
            while self.eat(",") {
                Self::room(&out, what)?;
                out.push(item(word(self.next())?)?);
            }
        }
        Ok(out)
    }

    /// Refuse a list as soon as it would pass [`MAX_ALTERNATIVES`] items, before reading more:
    /// a longer list cannot make a rule (every other list has at least one item).
    fn room<T>(out: &[T], what: &str) -> Result<(), String> {
        if out.len() < MAX_ALTERNATIVES {
            Ok(())
        } else {
            Err(format!(
                "a list of {what} has more than {MAX_ALTERNATIVES} items"
            ))
        }
    }

    /// A decimal number in `0..=u32::MAX` after `id` or `priority`.
    fn u32_after(&mut self, what: &str) -> Result<u32, String> {
        let t = self
            .next()
            .ok_or_else(|| format!("expected a number after '{what}'"))?;
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{what} {t:?} is not a decimal number"));
        }
        t.parse::<u32>()
            .map_err(|_| format!("{what} {t} is outside 0..=4294967295"))
    }
}

/// A rule's fields as written, before ids are assigned.
struct Parsed {
    action: String,
    id: Option<u32>,
    priority: Option<u32>,
    matches: Vec<Match>,
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn is_action(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// How many (source, destination) pairs are of one family (IPv4 with IPv4, IPv6 with IPv6,
/// `any` with either), counted without forming them; saturates at `usize::MAX`.
fn same_family_pairs(srcs: &[Option<AnyPrefix>], dsts: &[Option<AnyPrefix>]) -> usize {
    // Counts of IPv4, IPv6 and `any` entries.
    let count = |list: &[Option<AnyPrefix>]| {
        list.iter().fold([0usize; 3], |mut n, p| {
            n[match p {
                Some(AnyPrefix::V4(_)) => 0,
                Some(AnyPrefix::V6(_)) => 1,
                None => 2,
            }] += 1;
            n
        })
    };
    let ([s4, s6, sany], [d4, d6, dany]) = (count(srcs), count(dsts));
    s4.saturating_mul(d4 + dany)
        .saturating_add(s6.saturating_mul(d6 + dany))
        .saturating_add(sany.saturating_mul(dsts.len()))
}

fn parse_line(toks: Vec<&str>) -> Result<Parsed, String> {
    let mut w = Words { toks, at: 0 };
    let action = w.next().unwrap_or_default();
    if is_keyword(action) {
        return Err(format!(
            "a rule starts with an action word (allow, deny, ...), not {action:?}"
        ));
    }
    if !is_action(action) {
        return Err(format!(
            "{action:?} is not an action word (a letter or '_', then letters, digits, '_', '-' \
             or '.')"
        ));
    }
    let protos = if w.peek().is_some_and(|t| t.eq_ignore_ascii_case("from")) {
        vec![(0, 0)]
    } else {
        w.eat("proto");
        w.list("a protocol", parse_protocol)?
    };
    w.expect("from", "after the action and protocol")?;
    let srcs = w.list("a source address", parse_address)?;
    let sports = if w.eat("port") {
        w.list("a source port", parse_ports)?
    } else {
        vec![(0, u16::MAX)]
    };
    w.expect("to", "after the source")?;
    let dsts = w.list("a destination address", parse_address)?;
    let dports = if w.eat("port") {
        w.list("a destination port", parse_ports)?
    } else {
        vec![(0, u16::MAX)]
    };
    let (mut id, mut priority) = (None, None);
    while let Some(t) = w.next() {
        let slot = if t.eq_ignore_ascii_case("id") {
            &mut id
        } else if t.eq_ignore_ascii_case("priority") {
            &mut priority
        } else {
            return Err(format!("unexpected {t:?} after the rule"));
        };
        let what = t.to_ascii_lowercase();
        if slot.is_some() {
            return Err(format!("'{what}' is given twice"));
        }
        *slot = Some(w.u32_after(&what)?);
    }
    // Count the alternatives before building any: the lists may be long, and their product
    // far longer (two lists of 4000 addresses are 16 million pairs).
    let pairs = same_family_pairs(&srcs, &dsts);
    if pairs == 0 {
        return Err(
            "the source and destination addresses are of different families (IPv4 and IPv6)"
                .to_string(),
        );
    }
    let total = [protos.len(), sports.len(), dports.len()]
        .iter()
        .try_fold(pairs, |acc, &n| acc.checked_mul(n))
        .filter(|&n| n <= MAX_ALTERNATIVES)
        .ok_or_else(|| {
            format!("the lists expand into more than {MAX_ALTERNATIVES} alternatives")
        })?;
    // Each source meets only the destinations of its family, in the order written.
    let with = |v4: bool| -> Vec<Option<AnyPrefix>> {
        let keep = |d: &&Option<AnyPrefix>| match d {
            Some(AnyPrefix::V4(_)) => v4,
            Some(AnyPrefix::V6(_)) => !v4,
            None => true,
        };
        dsts.iter().filter(keep).copied().collect()
    };
    let (to_v4, to_v6) = (with(true), with(false));
    let mut pairs = Vec::with_capacity(pairs);
    for &s in &srcs {
        let ds = match s {
            Some(AnyPrefix::V4(_)) => &to_v4,
            Some(AnyPrefix::V6(_)) => &to_v6,
            None => &dsts,
        };
        pairs.extend(ds.iter().map(|&d| (s, d)));
    }
    let mut matches = Vec::with_capacity(total);
    for &proto in &protos {
        for &(src, dst) in &pairs {
            for &sport in &sports {
                for &dport in &dports {
                    matches.push(Match {
                        src,
                        dst,
                        sport,
                        dport,
                        proto,
                    });
                }
            }
        }
    }
    Ok(Parsed {
        action: action.to_string(),
        id,
        priority,
        matches,
    })
}

/// Read rules, one per line. Errors name the 1-based line.
pub fn parse_rules(text: &str) -> Result<Vec<TextRule>, ParseError> {
    let mut rules: Vec<TextRule> = Vec::new();
    let mut ids: HashMap<u32, usize> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let err = |message: String| ParseError { line, message };
        let body = raw.split_once('#').map_or(raw, |(b, _)| b);
        let toks = tokens(body);
        if toks.is_empty() {
            continue;
        }
        let p = parse_line(toks).map_err(err)?;
        let index = u32::try_from(rules.len()).map_err(|_| err("too many rules".to_string()))?;
        let id = p.id.unwrap_or(index);
        if let Some(&first) = ids.get(&id) {
            let how = if p.id.is_some() {
                String::new()
            } else {
                format!(" (a rule without 'id' takes its index, {index})")
            };
            return Err(err(format!(
                "rule id {id} is already used by the rule on line {first}{how}"
            )));
        }
        ids.insert(id, line);
        rules.push(TextRule {
            line,
            action: p.action,
            spec: Spec {
                id,
                priority: p.priority.unwrap_or(index),
                matches: p.matches,
            },
        });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Family, Key};

    fn net(text: &str) -> AnyPrefix {
        parse_prefix(text, true).unwrap()
    }

    #[test]
    fn the_example_reads_as_intended() {
        let text = "# comment\n\
            allow tcp from 10.0.0.0/8 to any port 80,443\n\
            \n\
            deny udp from any port 1024-65535 to 192.168.1.0/24 port 53   # trailing comment\n\
            allow proto 0x06/0xff from 2001:db8::/32 to any   id 7 priority 3\n\
            deny from any to any\n";
        let rules = parse_rules(text).unwrap();
        assert_eq!(rules.len(), 4);
        let lines: Vec<usize> = rules.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4, 5, 6]);
        let ids: Vec<(u32, u32)> = rules.iter().map(|r| (r.spec.id, r.spec.priority)).collect();
        assert_eq!(ids, [(0, 0), (1, 1), (7, 3), (3, 3)]);
        assert_eq!(rules[0].action, "allow");
        assert_eq!(
            rules[0].spec.matches,
            [
                Match {
                    src: Some(net("10.0.0.0/8")),
                    dst: None,
                    sport: (0, 65535),
                    dport: (80, 80),
                    proto: (6, 0xff),
                },
                Match {
                    src: Some(net("10.0.0.0/8")),
                    dst: None,
                    sport: (0, 65535),
                    dport: (443, 443),
                    proto: (6, 0xff),
                }
            ]
        );
        assert_eq!(
            rules[1].spec.matches,
            [Match {
                src: None,
                dst: Some(net("192.168.1.0/24")),
                sport: (1024, 65535),
                dport: (53, 53),
                proto: (17, 0xff),
            }]
        );
        assert_eq!(rules[2].spec.matches[0].src, Some(net("2001:db8::/32")));
        assert_eq!(rules[3].spec.matches, [Match::ANY]);
        assert_eq!(rules[3].spec.matches[0].family(), Ok(Family::Both));
    }

    #[test]
    fn lists_expand_and_mixed_pairs_drop_out() {
        let rules = parse_rules(
            "pass {tcp udp} from {10.0.0.0/8, 2001:db8::/32} to {192.0.2.1 2001:db8::1} \
             port {53, 80-81}",
        )
        .unwrap();
        let m = &rules[0].spec.matches;
        // 2 protocols x 2 same-family address pairs x 2 port ranges.
        assert_eq!(m.len(), 8);
        assert!(m.iter().all(|m| m.family().is_ok()));
        assert!(m.contains(&Match {
            src: Some(net("2001:db8::/32")),
            dst: Some(net("2001:db8::1")),
            sport: (0, 65535),
            dport: (80, 81),
            proto: (17, 0xff),
        }));
        let r = parse_rules("a from 10.0.0.0/8,any to any port any").unwrap();
        assert_eq!(r[0].spec.matches.len(), 2);
        assert_eq!(r[0].spec.matches[1], Match::ANY);
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol("TCP"), Ok((6, 0xff)));
        assert_eq!(parse_protocol("icmp6"), Ok((58, 0xff)));
        assert_eq!(parse_protocol("ipv6-icmp"), Ok((58, 0xff)));
        assert_eq!(parse_protocol("0x11"), Ok((17, 0xff)));
        assert_eq!(parse_protocol("132"), Ok((132, 0xff)));
        assert_eq!(parse_protocol("0x10/0xf0"), Ok((0x10, 0xf0)));
        assert_eq!(parse_protocol("0/0"), Ok((0, 0)));
        assert_eq!(parse_protocol("ip"), Ok((0, 0)));
        assert_eq!(parse_protocol("any"), Ok((0, 0)));
        assert!(parse_protocol("256").unwrap_err().contains("0..=255"));
        assert!(parse_protocol("tcpx")
            .unwrap_err()
            .contains("unknown protocol"));
        assert!(parse_protocol("6/0xf0").unwrap_err().contains("mask"));
        assert!(parse_protocol("0x/1").is_err());
        for (name, v) in PROTOCOLS {
            assert_eq!(protocol_number(name), Some(*v));
        }
    }

    #[test]
    fn every_error_names_its_line() {
        let cases = [
            (
                "allow tcpp from any to any",
                "unknown protocol name \"tcpp\"",
            ),
            ("allow from 10.0.0.1/8 to any", "host bits"),
            ("allow from any to any port 90-80", "inverted"),
            ("allow from any to any port 65536", "outside 0..=65535"),
            (
                "allow from any port 99999999999999999999999 to any",
                "outside",
            ),
            (
                "allow from 10.0.0.0/8 to 2001:db8::/32",
                "different families",
            ),
            (
                "allow from any to any id 0",
                "rule id 0 is already used by the rule on line 2",
            ),
            (
                "allow from any to any id 9 frobnicate",
                "unexpected \"frobnicate\"",
            ),
            ("allow from any to any id 9 id 10", "'id' is given twice"),
            (
                "allow from any to any priority x",
                "priority \"x\" is not a decimal",
            ),
            (
                "allow from any to any id 4294967296",
                "outside 0..=4294967295",
            ),
            ("allow from any", "expected 'to'"),
            ("allow tcp any to any", "expected 'from'"),
            ("from any to any", "starts with an action word"),
            ("4allow from any to any", "not an action word"),
            (
                "allow from {10.0.0.0/8 to any",
                "expected a source address, found \"to\"",
            ),
            ("allow from {10.0.0.0/8", "closing"),
            ("allow from {} to any", "empty list"),
            ("allow from 10.0.0.0/8, to any", "found \"to\""),
            ("allow from banana to any", "not an IP prefix"),
            ("allow proto 0x07/0x06 from any to any", "mask"),
            ("allow from any to any port 80,", "end of the line"),
            ("allow from any to any port 8o", "not a decimal number"),
            (
                "allow from any to any port -5",
                "port \"-5\" is not a decimal number",
            ),
            (
                "allow from any port 5- to any",
                "port \"5-\" is not a decimal number",
            ),
        ];
        for (bad, what) in cases {
            let text = format!("# first\npass from any to any\n\n{bad}\n");
            let e = parse_rules(&text).unwrap_err();
            assert_eq!(e.line, 4, "{bad}: {e}");
            assert!(e.message.contains(what), "{bad}: {e} lacks {what}");
        }
        // An explicit id taken later by a rule's default id.
        let e = parse_rules("a from any to any id 1\nb from any to any\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("takes its index, 1"), "{e}");
        let big = "a {1,2,3,4,5,6,7,8} from any port {1,2,3,4,5,6,7,8} to any port \
                   {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65}";
        assert!(parse_rules(big)
            .unwrap_err()
            .message
            .contains("more than 4096"));
    }

    #[test]
    fn alternatives_are_counted_before_they_are_made() {
        let nets = |n: usize| -> String {
            (0..n)
                .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
                .collect::<Vec<_>>()
                .join(",")
        };
        // 4000 x 4000 pairs: refused from the counts alone.
        let e = parse_rules(&format!("a from {0} to {0}", nets(4000))).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (1, "the lists expand into more than 4096 alternatives")
        );
        // One list past the limit is refused where it passes it.
        let e = parse_rules(&format!("a from {} to any", nets(5000))).unwrap_err();
        assert!(e.message.contains("has more than 4096 items"), "{e}");
        // Only pairs of one family count: each of 4094 IPv4 sources meets one of the two
        // destinations, `any` meets both: 4096.
        let r = parse_rules(&format!(
            "a from {},any to {{192.0.2.1, 2001:db8::1}}",
            nets(4094)
        ))
        .unwrap();
        let m = &r[0].spec.matches;
        assert_eq!(m.len(), 4094 + 2);
        assert_eq!(m[4093].dst, Some(net("192.0.2.1")));
        assert_eq!((m[4094].src, m[4095].dst), (None, Some(net("2001:db8::1"))));
        let e = parse_rules(&format!(
            "a from {},any to {{192.0.2.1, 2001:db8::1}}",
            nets(4095)
        ))
        .unwrap_err();
        assert!(e.message.contains("more than 4096 alternatives"), "{e}");
        let some = |v4: usize, v6: usize, any: usize| {
            let mut l = vec![Some(net("10.0.0.0/8")); v4];
            l.extend(vec![Some(net("2001:db8::/32")); v6]);
            l.extend(vec![None; any]);
            l
        };
        assert_eq!(
            same_family_pairs(&some(2, 3, 1), &some(5, 7, 11)),
            2 * 16 + 3 * 18 + 23
        );
        assert_eq!(same_family_pairs(&some(2, 0, 0), &some(0, 7, 0)), 0);
    }

    #[test]
    fn rules_classify_as_written() {
        let text = "allow tcp from 10.0.0.0/8 to any port 80,443\n\
                    deny udp from any port 1024-65535 to 192.168.1.0/24 port 53\n\
                    allow icmp6 from 2001:db8::/32 to any id 7 priority 3\n\
                    deny from any to any\n";
        let rules = parse_rules(text).unwrap();
        let mut c = Classifier::new();
        c.add_all(rules.into_iter().map(|r| r.spec).collect())
            .unwrap();
        let k4 = |src: u32, dst: u32, sport, dport, proto| Key {
            src,
            dst,
            sport,
            dport,
            proto,
        };
        assert_eq!(c.classify_v4(&k4(0x0a00_0001, 1, 5, 443, 6)), Some(0));
        assert_eq!(c.classify_v4(&k4(0x0a00_0001, 1, 5, 444, 6)), Some(3));
        assert_eq!(c.classify_v4(&k4(1, 0xc0a8_0105, 1024, 53, 17)), Some(1));
        assert_eq!(c.classify_v4(&k4(1, 0xc0a8_0105, 1023, 53, 17)), Some(3));
        let six = |src: u128, proto| Key {
            src,
            dst: 1,
            sport: 0,
            dport: 0,
            proto,
        };
        assert_eq!(c.classify_v6(&six(0x2001_0db8 << 96, 58)), Some(7));
        assert_eq!(c.classify_v6(&six(0x2001_0db9 << 96, 58)), Some(3));
    }

    #[test]
    fn words_and_punctuation() {
        assert_eq!(
            tokens("a {b,c}d ,e"),
            ["a", "{", "b", ",", "c", "}", "d", ",", "e"]
        );
        assert_eq!(tokens("  "), Vec::<&str>::new());
        assert_eq!(number("0x1F"), Some(31));
        assert_eq!(number("12"), Some(12));
        assert_eq!(number("0x"), None);
        assert_eq!(number("-1"), None);
    }
}
