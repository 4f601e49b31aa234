//! openraft's own storage test suite (`openraft::testing::Suite::test_all`, written by
//! openraft's authors) against the log and state machine on AlexStorage: each of its
//! cases gets a fresh store in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alexstorage_raft::{open, LogStore, NodeId, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|error| StorageIOError::write(&error))?;
        let (log, state_machine) = open(dir.path()).map_err(|error| StorageIOError::write(&error))?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).unwrap();
}
