//! What openraft's suite does not check across a reopen of the store: the vote, the
//! log (after a truncate and a purge), the applied state and the current snapshot are
//! there after the store is closed and opened again, and installing a snapshot
//! replaces the whole state machine (keys absent from the snapshot are gone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Cursor;

use alexstorage_raft::{open, Request, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership, Vote,
};

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(term: u64, index: u64, key: i64, value: &[u8]) -> Entry<TypeConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Request::Put { key, value: value.to_vec() }) }
}

#[tokio::test(flavor = "current_thread")]
async fn log_vote_state_and_snapshot_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let membership = Membership::<u64, BasicNode>::new(vec![BTreeSet::from([1u64])], None);
    let snapshot_id;
    {
        let (mut log, mut state_machine) = open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        let mut entries = vec![Entry { log_id: log_id(1, 1), payload: EntryPayload::Membership(membership.clone()) }];
        entries.extend((2..=10).map(|index| put(1, index, index as i64, format!("v{index}").as_bytes())));
        log.blocking_append(entries.clone()).await.unwrap();
        // A later leader replaces the tail from index 9; the head up to 3 is purged.
        log.truncate(log_id(1, 9)).await.unwrap();
        log.blocking_append(vec![put(2, 9, 9, b"new nine")]).await.unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
        state_machine.apply(entries[..8].to_vec()).await.unwrap();
        let snapshot = state_machine.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 8)));
        snapshot_id = snapshot.meta.snapshot_id.clone();
    }
    let (mut log, mut state_machine) = open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 9)));
    let kept = log.try_get_log_entries(0..100).await.unwrap();
    let indexes: Vec<u64> = kept.iter().map(|entry| entry.log_id.index).collect();
    assert_eq!(indexes, (4..=9).collect::<Vec<_>>(), "purged through 3, truncated from 9, 9 appended again");
    assert_eq!(kept.last().unwrap().log_id, log_id(2, 9));

    let (applied, stored) = state_machine.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 8)));
    assert_eq!(stored, StoredMembership::new(Some(log_id(1, 1)), membership.clone()));
    for key in 2..=8 {
        assert_eq!(state_machine.get(key).unwrap(), Some(format!("v{key}").into_bytes()));
    }
    assert_eq!(state_machine.get(9).unwrap(), None, "entry 9 was never applied");
    let current = state_machine.get_current_snapshot().await.unwrap().expect("the built snapshot is kept");
    assert_eq!(current.meta.snapshot_id, snapshot_id);
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 8)));

    // Installing a snapshot of another state replaces this one whole.
    let data = {
        let mut bytes = Vec::new();
        for (key, value) in [(100i64, b"hundred".as_slice()), (-5, b"minus five")] {
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(value);
        }
        bytes
    };
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(4, 50)),
        last_membership: StoredMembership::new(Some(log_id(4, 40)), membership),
        snapshot_id: "installed".into(),
    };
    state_machine.install_snapshot(&meta, Box::new(Cursor::new(data))).await.unwrap();
    assert_eq!(state_machine.len(), 2);
    assert_eq!(state_machine.get(100).unwrap(), Some(b"hundred".to_vec()));
    assert_eq!(state_machine.get(-5).unwrap(), Some(b"minus five".to_vec()));
    assert_eq!(state_machine.get(2).unwrap(), None, "keys absent from the snapshot are gone");
    assert_eq!(state_machine.applied_state().await.unwrap().0, Some(log_id(4, 50)));
    let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.snapshot_id, "installed");

    // A snapshot whose data is cut short is refused, and the state stays.
    let meta = SnapshotMeta { snapshot_id: "cut".into(), ..meta };
    let cut = Box::new(Cursor::new(vec![1, 2, 3]));
    assert!(state_machine.install_snapshot(&meta, cut).await.is_err());
    assert_eq!(state_machine.len(), 2);
    assert_eq!(state_machine.get_current_snapshot().await.unwrap().unwrap().meta.snapshot_id, "installed");
}
