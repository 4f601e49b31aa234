#![allow(missing_docs, clippy::unwrap_used)]
use alexstorage::index::Alex;
use alexstorage::keygen::{generate, KeyPattern};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    for p in KeyPattern::ALL {
        let mut keys = generate(p, n, 20261125);
        keys.sort_unstable();
        let pairs: Vec<(i64, u64)> = keys.iter().map(|&k| (k, k as u64)).collect();
        let t = std::time::Instant::now();
        let a = Alex::bulk_load(&pairs).unwrap();
        let el = t.elapsed();
        println!("{:12} {:?} {:?}", p.name(), el, a.stats());
    }
}
