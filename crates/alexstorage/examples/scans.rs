#![allow(missing_docs, clippy::unwrap_used)]
use alexstorage::index::Alex;
use alexstorage::keygen::{generate, KeyPattern, SplitMix64};
use std::hint::black_box;
fn main() {
    let p = KeyPattern::from_name(&std::env::args().nth(1).unwrap()).unwrap();
    let mut keys = generate(p, 1_000_000, 20261125);
    let mut probe = keys.clone();
    SplitMix64::new(9).shuffle(&mut probe);
    keys.sort_unstable();
    let pairs: Vec<(i64, u64)> = keys.iter().map(|&k| (k, k as u64)).collect();
    let a = Alex::bulk_load(&pairs).unwrap();
    let bt: std::collections::BTreeMap<i64, u64> = pairs.iter().copied().collect();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let mut total = 0u64;
        for &s in probe.iter().take(100_000) {
            for (k, v) in a.range(s..).take(100) {
                total = total.wrapping_add(v ^ k as u64);
            }
        }
        let e1 = t.elapsed().as_nanos() as f64 / 1e7;
        let t = std::time::Instant::now();
        for &s in probe.iter().take(100_000) {
            for (k, v) in bt.range(s..).take(100) {
                total = total.wrapping_add(v ^ (*k as u64));
            }
        }
        let e2 = t.elapsed().as_nanos() as f64 / 1e7;
        black_box(total);
        println!("alex {e1:.2} ns/key  btree {e2:.2} ns/key");
    }
}
