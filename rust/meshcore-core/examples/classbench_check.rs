//! Check the reference first-match scan against a ClassBench `.firstmatch` oracle:
//! `cargo run --release -p meshcore-core --example classbench_check FILTERS TRACE FIRSTMATCH`.
use meshcore_core::classify::classbench::{parse_filters, parse_trace};
use meshcore_core::classify::linear_first_match;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut read = || std::fs::read_to_string(args.next().expect("FILTERS TRACE FIRSTMATCH"));
    let rules = parse_filters(&read().expect("filters")).unwrap_or_else(|e| panic!("{e}"));
    let trace = parse_trace(&read().expect("trace")).unwrap_or_else(|e| panic!("{e}"));
    let answers: Vec<i64> = read()
        .expect("firstmatch")
        .lines()
        .map(|l| l.trim().parse().expect("an integer per line"))
        .collect();
    assert_eq!(
        trace.len(),
        answers.len(),
        "trace and answers differ in length"
    );
    let wrong = trace
        .iter()
        .zip(&answers)
        .filter(|(k, &want)| linear_first_match(&rules, k).map_or(-1, i64::from) != want)
        .count();
    println!(
        "{} rules, {} packets, {wrong} answers differ from the oracle",
        rules.len(),
        trace.len()
    );
}
