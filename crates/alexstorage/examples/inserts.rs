#![allow(missing_docs, clippy::unwrap_used)]
use alexstorage::index::Alex;
use alexstorage::keygen::{generate, KeyPattern, SplitMix64};
fn main() {
    let p = KeyPattern::from_name(&std::env::args().nth(1).unwrap()).unwrap();
    let n: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut keys = generate(p, n, 20261125);
    keys.sort_unstable();
    let half: Vec<(i64, u64)> = keys.iter().step_by(2).map(|&k| (k, k as u64)).collect();
    let mut rest: Vec<i64> = keys.iter().skip(1).step_by(2).copied().collect();
    SplitMix64::new(9).shuffle(&mut rest);
    for _ in 0..5 {
        let mut a = Alex::bulk_load(&half).unwrap();
        let t = std::time::Instant::now();
        for &k in &rest {
            a.insert(k, k as u64);
        }
        println!("{:?} ns/insert {:?}", t.elapsed().as_nanos() as f64 / rest.len() as f64, a.stats());
    }
}
