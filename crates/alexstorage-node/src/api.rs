//! The JSON bodies of the client and cluster API, shared by the server and the
//! [`Client`](crate::Client).

use std::collections::{BTreeMap, BTreeSet};

use alexstorage_raft::{NodeId, Request};
use serde::{Deserialize, Serialize};

/// A header a member sets on an answer it got from the leader on the caller's behalf:
/// the leader's address, so that a client can talk to it directly next time.
pub const LEADER_HEADER: &str = "x-alexstorage-leader";

/// A header a member sets on a request it forwards to the leader: the leader never
/// forwards it again (two members that disagree on the leader do not bounce it).
pub const FORWARDED_HEADER: &str = "x-alexstorage-forwarded";

/// What a write answers: the log index it was committed and applied at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    /// The write's log index.
    pub index: u64,
}

/// What a failed call answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
    /// The leader, when the member knows it (on 421: ask it instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderHint>,
}

/// Who the leader is, as a member knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's id.
    pub id: NodeId,
    /// Its address, if the member knows it.
    pub addr: Option<String>,
}

/// One write of a batch (`POST /kv`): `{"put": {"key": 1, "value": "text"}}`,
/// `{"put": {"key": 1, "hex": "00ff"}}` or `{"delete": {"key": 2}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Operation {
    /// Sets a key.
    Put {
        /// The key.
        key: i64,
        /// The value as UTF-8 text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// The value as hexadecimal digits (for bytes that are not text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    /// Removes a key.
    Delete {
        /// The key.
        key: i64,
    },
}

impl Operation {
    /// A put of `value`, whatever its bytes.
    pub fn put(key: i64, value: &[u8]) -> Self {
        match std::str::from_utf8(value) {
            Ok(text) => Operation::Put { key, value: Some(text.to_owned()), hex: None },
            Err(_) => Operation::Put { key, value: None, hex: Some(hex(value)) },
        }
    }

    /// The replicated write this operation stands for; an error for a put with no value,
    /// two values, or digits that are not hexadecimal.
    pub fn into_request(self) -> Result<Request, String> {
        match self {
            Operation::Put { key, value: Some(value), hex: None } => {
                Ok(Request::Put { key, value: value.into_bytes() })
            }
            Operation::Put { key, hex: Some(digits), value: None } => Ok(Request::Put {
                key,
                value: unhex(&digits).ok_or_else(|| format!("key {key}: hex is not hexadecimal"))?,
            }),
            Operation::Put { key, .. } => Err(format!("key {key}: a put needs exactly one of value and hex")),
            Operation::Delete { key } => Ok(Request::Delete { key }),
        }
    }
}

/// A batch of writes (`POST /kv`), applied together at one log index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The writes, in order.
    pub ops: Vec<Operation>,
}

/// `POST /cluster/init`: the first membership, every member's id and address (this
/// member among them; a map of this member alone starts a cluster of one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Member ids and their addresses.
    pub members: BTreeMap<NodeId, String>,
}

/// `POST /cluster/add-learner`: a member to replicate to, not yet voting. Answers once
/// it is within openraft's `replication_lag_threshold` (5,000 entries) of the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerRequest {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: String,
}

/// `POST /cluster/change-membership`: the voting members from now on (learners among
/// them are promoted; voters left out are removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeMembershipRequest {
    /// The ids of the voters.
    pub members: BTreeSet<NodeId>,
}

/// `GET /cluster/status`: what one member knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This member's id.
    pub id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index its state machine applied.
    pub last_applied: Option<u64>,
    /// The last index its current snapshot covers.
    pub snapshot: Option<u64>,
    /// The last index purged from its log.
    pub purged: Option<u64>,
    /// The voters of the membership it knows (the last config of a joint one).
    pub voters: BTreeSet<NodeId>,
    /// Every member it knows of (voters and learners) and their addresses.
    pub nodes: BTreeMap<NodeId, String>,
    /// The number of keys in its state machine.
    pub keys: usize,
}

/// Bytes as lowercase hexadecimal digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes hexadecimal digits stand for, if they are such digits, two a byte.
pub fn unhex(digits: &str) -> Option<Vec<u8>> {
    if digits.len() % 2 != 0 || !digits.bytes().all(|digit| digit.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|at| digits.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn operations_read_text_and_hex_and_refuse_what_is_neither() {
        let ops: BatchRequest = serde_json::from_str(
            r#"{"ops":[{"put":{"key":1,"value":"one"}},{"put":{"key":2,"hex":"00ff"}},{"delete":{"key":3}}]}"#,
        )
        .unwrap();
        let requests: Vec<Request> = ops.ops.into_iter().map(|op| op.into_request().unwrap()).collect();
        assert_eq!(
            requests,
            vec![
                Request::Put { key: 1, value: b"one".to_vec() },
                Request::Put { key: 2, value: vec![0, 255] },
                Request::Delete { key: 3 }
            ]
        );
        for bad in [
            r#"{"put":{"key":1}}"#,
            r#"{"put":{"key":1,"value":"a","hex":"00"}}"#,
            r#"{"put":{"key":1,"hex":"0g"}}"#,
            r#"{"put":{"key":1,"hex":"0"}}"#,
            r#"{"put":{"key":1,"hex":"+f"}}"#,
            r#"{"put":{"key":1,"hex":"+f+f"}}"#,
        ] {
            let op: Operation = serde_json::from_str(bad).unwrap();
            assert!(op.into_request().is_err(), "{bad} is refused");
        }
        assert!(serde_json::from_str::<Operation>(r#"{"put":{"key":1,"valu":"a"}}"#).is_err());
        // Any bytes round-trip through `Operation::put`.
        for value in [&b"text"[..], &[0, 159, 146, 150][..], &[][..]] {
            assert_eq!(
                Operation::put(9, value).into_request().unwrap(),
                Request::Put { key: 9, value: value.to_vec() }
            );
        }
    }
}
