#![allow(missing_docs, clippy::unwrap_used)]
use alexstorage::index::Alex;
use alexstorage::keygen::{generate, KeyPattern};
fn main() {
    let p = KeyPattern::from_name(&std::env::args().nth(1).unwrap()).unwrap();
    let n: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut keys = generate(p, n, 20261125);
    keys.sort_unstable();
    let pairs: Vec<(i64, u64)> = keys.iter().map(|&k| (k, k as u64)).collect();
    let a = Alex::bulk_load(&pairs).unwrap();
    let sizes = a.data_node_sizes();
    let mut hist = std::collections::BTreeMap::new();
    for (min, count) in &sizes {
        *hist.entry(count.next_power_of_two()).or_insert(0usize) += 1;
        let _ = min;
    }
    println!("{hist:?}");
    for (min, count) in sizes.iter().filter(|s| s.1 < 8).take(20) {
        println!("{min} {count}");
    }
}
