//! A power cut after a clean close loses nothing and damages nothing: the close's
//! checkpoint covers the segment's last durable mark, which claims only the writes
//! before it, so the kill harness (`testing::power_cuts::cut_power_after_kill`) must
//! keep what the checkpoint covers (it once zeroed that mark, and `verify()` rightly
//! reported the durable bytes damaged: the CI failure of the kill -9 and power-cut
//! loop).

#![allow(clippy::unwrap_used)]

use alexstorage::testing::power_cuts::cut_power_after_kill;
use alexstorage::{Durability, Options};

#[test]
fn a_power_cut_after_a_clean_close_keeps_every_byte_the_checkpoint_covers() {
    // 0: every page kept; 1: every page past the durable end lost; 2: torn at a sector.
    for choice in 0u8..3 {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::new().durability(Durability::Sync).segment_size(64 << 10);
        {
            let db = options.clone().open(dir.path()).unwrap();
            for key in 0..10 {
                db.put(key, vec![key as u8; 100]).unwrap();
            }
        }
        let changed = cut_power_after_kill(dir.path(), &mut std::iter::repeat(choice));
        // The file's reserved blocks past the records are zeroed (they were zero):
        // the cut ran, over pages past the durable end only.
        assert_eq!(changed > 0, choice != 0, "choice {choice}");
        let db = options.open(dir.path()).unwrap();
        for key in 0..10 {
            assert_eq!(db.get(key).unwrap().as_deref(), Some(&vec![key as u8; 100][..]), "choice {choice}, key {key}");
        }
        let report = db.verify().unwrap();
        assert_eq!(report.records, 10, "choice {choice}");
    }
}
