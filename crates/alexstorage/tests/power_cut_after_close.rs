//! The kill harness's power cut (`testing::power_cuts::cut_power_after_kill`) against
//! what a clean close made durable. A close's checkpoint covers the segment's last
//! durable mark, which claims only the writes before it: the harness once zeroed that
//! mark, and `verify()` rightly reported durable bytes damaged (the CI failure of the
//! kill -9 and power-cut loop). Now the harness takes what it knows was durable after
//! its own close as a floor: a cut after a clean close changes nothing, and writes
//! after it that no sync covered are still lost (the floor keeps no more than it must).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use alexstorage::testing::power_cuts::{cut_power_after_kill, durable_after_close};
use alexstorage::{Durability, Options};

fn value(key: i64) -> Vec<u8> {
    vec![key as u8; 100]
}

fn segment_bytes(dir: &Path) -> Vec<Vec<u8>> {
    common::segment_files(dir).iter().map(|path| std::fs::read(path).unwrap()).collect()
}

#[test]
fn a_power_cut_keeps_what_a_clean_close_made_durable_and_no_more() {
    // 0: every page kept; 1: every page past the durable end lost; 5 and 8: torn at
    // the second and third 512-byte sector of each page.
    for choice in [0u8, 1, 5, 8] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::new().segment_size(64 << 10);
        {
            let db = options.clone().durability(Durability::Sync).open(dir.path()).unwrap();
            for key in 0..10 {
                db.put(key, value(key)).unwrap();
            }
        }
        let floor = durable_after_close(dir.path());
        let before = segment_bytes(dir.path());
        let changed = cut_power_after_kill(dir.path(), &floor, &mut std::iter::repeat(choice));
        assert_eq!(changed, 0, "choice {choice}: a cut after a clean close changed durable bytes");
        assert!(segment_bytes(dir.path()) == before, "choice {choice}");
        {
            let db = options.clone().open(dir.path()).unwrap();
            for key in 0..10 {
                assert_eq!(db.get(key).unwrap().as_deref(), Some(&value(key)[..]), "choice {choice}, key {key}");
            }
            assert_eq!(db.verify().unwrap().records, 10, "choice {choice}");
        }

        // Writes no sync covered, then a crash: the cut may take them, from the first
        // lost byte on.
        let floor = durable_after_close(dir.path());
        {
            let db = options.clone().durability(Durability::Buffered).open(dir.path()).unwrap();
            for key in 100..110 {
                db.put(key, value(key)).unwrap();
            }
            db.simulate_crash();
        }
        let changed = cut_power_after_kill(dir.path(), &floor, &mut std::iter::repeat(choice));
        assert_eq!(changed == 0, choice == 0, "choice {choice}: {changed} pages changed");
        let db = options.open(dir.path()).unwrap();
        for key in 0..10 {
            assert_eq!(db.get(key).unwrap().as_deref(), Some(&value(key)[..]), "choice {choice}, key {key}");
        }
        let kept: Vec<bool> = (100..110).map(|key| db.get(key).unwrap().is_some()).collect();
        let prefix = kept.iter().take_while(|&&kept| kept).count();
        assert!(kept[prefix..].iter().all(|&kept| !kept), "choice {choice}: not a prefix: {kept:?}");
        match choice {
            0 => assert_eq!(prefix, 10, "choice 0 keeps every page"),
            1 => assert_eq!(prefix, 0, "choice 1 loses every page past the durable end"),
            _ => {}
        }
        for key in 100..100 + prefix as i64 {
            assert_eq!(db.get(key).unwrap().as_deref(), Some(&value(key)[..]), "choice {choice}, key {key}");
        }
        db.verify().unwrap();
    }
}
