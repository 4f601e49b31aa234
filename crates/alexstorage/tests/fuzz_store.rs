//! Bounded property-test versions of the cargo-fuzz targets in `fuzz/`: stores whose
//! files hold arbitrary bytes, and valid stores with arbitrary damage. Opening and
//! reading must never panic, and no read may return bytes that were not written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use alexstorage::testing::fuzzing::{damage_valid_store_checked, open_arbitrary_store};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(200), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_store_files_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = open_arbitrary_store(dir.path(), &data);
    }

    #[test]
    fn damaged_stores_never_panic_or_lie(damage in prop::collection::vec(any::<u8>(), 0..60)) {
        let dir = tempfile::tempdir().unwrap();
        damage_valid_store_checked(dir.path(), &damage);
    }
}

/// Arbitrary bytes shaped like records: valid headers with random lengths, flipped
/// checksums, batches with bad counts.
#[test]
fn record_shaped_garbage_never_panics() {
    let mut random = alexstorage_keygen::SplitMix64::new(5);
    for _ in 0..300 {
        let mut data = vec![0xF0u8];
        data.extend_from_slice(&{
            let mut header = [0u8; 64];
            header.copy_from_slice(
                &alexstorage::testing::format::SegmentHeader { version: 1, id: 1, flags: 0, capacity: 4096 }.encode(),
            );
            header
        });
        for _ in 0..random.below(20) {
            let kind = 1 + random.below(3) as u8;
            let len = random.below(200) as u32;
            let header = alexstorage::testing::format::RecordHeader {
                kind: match kind {
                    1 => alexstorage::testing::format::RecordKind::Put,
                    2 => alexstorage::testing::format::RecordKind::Delete,
                    _ => alexstorage::testing::format::RecordKind::Batch,
                },
                flags: (random.below(8) == 0) as u8,
                column_family: 0,
                value_len: len,
                sequence: random.below(30),
                key: random.below(100) as i64,
            };
            let value: Vec<u8> = (0..len).map(|_| random.next_u64() as u8).collect();
            let mut encoded = header.encode(&value).to_vec();
            if random.below(4) == 0 {
                encoded[0] ^= 1;
            }
            data.extend_from_slice(&encoded);
            data.extend_from_slice(&value[..(len as usize).min(value.len())]);
        }
        let dir = tempfile::tempdir().unwrap();
        let _ = open_arbitrary_store(dir.path(), &data);
    }
}

/// The compressed variant of the damaged store really holds a dictionary (so damage
/// reaches dictionary records and values compressed with them), and undamaged it
/// reads back whole.
#[test]
fn the_compressed_variant_holds_a_dictionary() {
    use alexstorage::testing::fuzzing::{damage_valid_store, expected_document, DOCUMENT_KEYS};
    let dir = tempfile::tempdir().unwrap();
    damage_valid_store(dir.path(), &[2]).unwrap();
    let with_dictionary = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .filter(|bytes| bytes.len() > 92 && bytes[20] & 1 == 1)
        .filter(|bytes| bytes[64 + 4] == 5)
        .count();
    assert!(with_dictionary > 0);
    let db = alexstorage::Db::open(dir.path()).unwrap();
    for key in DOCUMENT_KEYS {
        let value = db.get(key).unwrap().unwrap();
        assert!(!value.is_zero_copy());
        assert_eq!(value.to_vec(), expected_document(key));
    }
    db.verify().unwrap();
}
