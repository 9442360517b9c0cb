//! Any bytes as a rule file, in the text format and as ClassBench filters: the parsers return
//! rules or an error naming a line of the input, never panic, and the rules they return are
//! accepted whole by a classifier.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcore_core::classify::{classbench, text, Classifier, Key, Spec};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let lines = input.lines().count();
    match text::parse_rules(input) {
        Ok(rules) => {
            assert!(rules.windows(2).all(|w| w[0].line < w[1].line));
            assert!(rules.iter().all(|r| !r.spec.matches.is_empty()));
            assert!(rules.iter().all(|r| (1..=lines).contains(&r.line)));
            let mut c = Classifier::new();
            c.add_all(rules.into_iter().map(|r| r.spec).collect())
                .expect("parsed rules are valid and their ids unique");
            let k4 = Key {
                src: 0x0a00_0001u32,
                dst: 1,
                sport: 0,
                dport: 80,
                proto: 6,
            };
            let k6 = Key {
                src: 1u128,
                dst: 2,
                sport: 53,
                dport: 0,
                proto: 17,
            };
            for id in [c.classify_v4(&k4), c.classify_v6(&k6)]
                .into_iter()
                .flatten()
            {
                assert!(c.contains(id));
            }
        }
        Err(e) => assert!((1..=lines).contains(&e.line), "{e}"),
    }
    match classbench::parse_filters(input) {
        Ok(rules) => {
            let mut c = Classifier::new();
            c.add_all(rules.into_iter().map(Spec::from).collect())
                .expect("ClassBench rules are valid and their ids unique");
        }
        Err(e) => assert!((1..=lines).contains(&e.line), "{e}"),
    }
});
