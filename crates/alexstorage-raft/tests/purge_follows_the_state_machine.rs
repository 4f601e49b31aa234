//! A purge is written no further than what the state machine holds: openraft purges a
//! follower's log up to a snapshot it received as soon as it hands the install to the
//! state machine (another task), so a crash between the two must not leave the log
//! purged past the applied state. Past it, the purge is done in memory and written by
//! the state machine's write that covers it; a crash before loses only the purge.
//! Also: an entry as large as a request may be (20 MiB of value) is stored at about
//! its own size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alexstorage_raft::{open, Request, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use std::io::Cursor;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, SnapshotMeta, StoredMembership};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn put(index: u64, value: Vec<u8>) -> Entry<TypeConfig> {
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(Request::Put { key: index as i64, value }) }
}

async fn indexes(log: &mut alexstorage_raft::LogStore) -> Vec<u64> {
    log.try_get_log_entries(0..).await.unwrap().iter().map(|entry| entry.log_id.index).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_purge_is_written_only_once_the_state_machine_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=10).map(|index| put(index, vec![index as u8; 10])).collect();
    {
        let (mut log, _state_machine) = open(dir.path()).unwrap();
        log.blocking_append(entries.clone()).await.unwrap();
        // Nothing applied: the purge is done as far as openraft sees...
        log.purge(log_id(8)).await.unwrap();
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(8)));
        assert_eq!(indexes(&mut log).await, vec![9, 10]);
    }
    {
        // ...but not written: a crash (or a close) before the state machine holds it
        // loses only the purge.
        let (mut log, mut state_machine) = open(dir.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(state.last_log_id, Some(log_id(10)));
        assert_eq!(indexes(&mut log).await, (1..=10).collect::<Vec<_>>());
        // Applied through 8: a purge through 8 is written at once.
        state_machine.apply(entries[..8].to_vec()).await.unwrap();
        log.purge(log_id(8)).await.unwrap();
        // A purge through 9 waits for the apply of 9, which writes it.
        log.purge(log_id(9)).await.unwrap();
        assert_eq!(indexes(&mut log).await, vec![10]);
    }
    {
        let (mut log, mut state_machine) = open(dir.path()).unwrap();
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(8)));
        assert_eq!(indexes(&mut log).await, vec![9, 10]);
        log.purge(log_id(9)).await.unwrap();
        state_machine.apply(vec![entries[8].clone()]).await.unwrap();
        // A purge never goes back.
        log.purge(log_id(3)).await.unwrap();
    }
    let (mut log, _state_machine) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(9)));
    assert_eq!(state.last_log_id, Some(log_id(10)));
    assert_eq!(indexes(&mut log).await, vec![10]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_installed_snapshot_is_written_with_its_purge() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut state_machine) = open(dir.path()).unwrap();
        // Entries of a later term below the snapshot's index: the install's purge must
        // take them with it.
        let later: Vec<_> = (1..=6)
            .map(|index| Entry {
                log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
                payload: EntryPayload::Normal(Request::Put { key: index as i64, value: vec![3; 4] }),
            })
            .collect();
        log.blocking_append(later).await.unwrap();
        // Every entry covered by a pending purge: the log state says so by index.
        log.purge(log_id(12)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(12)));
        assert_eq!(state.last_log_id, Some(log_id(12)));
        assert!(indexes(&mut log).await.is_empty());
        // The install at (1, 10) purges through it in its own batch.
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(10)),
            last_membership: StoredMembership::default(),
            snapshot_id: "ten".into(),
        };
        let mut data = Vec::new();
        data.extend_from_slice(&5i64.to_le_bytes());
        data.extend_from_slice(&1u32.to_le_bytes());
        data.push(b'x');
        state_machine.install_snapshot(&meta, Box::new(Cursor::new(data))).await.unwrap();
    }
    let (mut log, mut state_machine) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(10)), "the purge was written with the install");
    assert_eq!(state.last_log_id, Some(log_id(10)));
    assert!(indexes(&mut log).await.is_empty(), "the later term's entries below the snapshot are gone");
    assert_eq!(state_machine.applied_state().await.unwrap().0, Some(log_id(10)));
    assert_eq!(state_machine.get(5).unwrap(), Some(b"x".to_vec()));
}

#[tokio::test(flavor = "current_thread")]
async fn a_large_entry_is_stored_at_about_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _state_machine) = open(dir.path()).unwrap();
    let value: Vec<u8> = (0..20usize << 20).map(|index| (index * 7) as u8).collect();
    log.blocking_append(vec![put(1, value.clone())]).await.unwrap();
    let read = log.try_get_log_entries(1..2).await.unwrap();
    match &read[0].payload {
        EntryPayload::Normal(Request::Put { value: stored, .. }) => assert!(stored == &value),
        other => panic!("read back {other:?}"),
    }
}
