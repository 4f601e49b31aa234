#![allow(missing_docs, clippy::unwrap_used)]
use alexstorage::index::Alex;
use alexstorage::keygen::{generate, KeyPattern};
fn main() {
    let p = KeyPattern::from_name(&std::env::args().nth(1).unwrap()).unwrap();
    let n: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut keys = generate(p, n, 20261125);
    keys.sort_unstable();
    let pairs: Vec<(i64, u64)> = keys.iter().map(|&k| (k, k as u64)).collect();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let a = Alex::bulk_load(&pairs).unwrap();
        println!("{:12} {:?} {:?}", p.name(), t.elapsed(), a.stats());
    }
}
