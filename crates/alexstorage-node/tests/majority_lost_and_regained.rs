//! Two of three members down: the one left cannot commit. A write to it is answered
//! 503 after the server's patience, its outcome unknown, and a linearizable read fails
//! too; nothing is acknowledged. With one member back the majority returns: writes
//! commit again, every write acknowledged before the outage is there, and the write
//! whose outcome was unknown is either there or not, never half.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use alexstorage_node::{Client, ClientError};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_nothing_is_acknowledged_and_with_it_back_everything_is_there() {
    let root = tempfile::tempdir().unwrap();
    let mut members = start_members(root.path(), 3, &[]);
    let addrs = addrs(&members);
    let client = Arc::new(Client::new(addrs).unwrap());
    client.init(&members[0].addr, membership(&members)).await.unwrap();
    let writers = Writers::start(Arc::clone(&client), 4);
    writers.until_acked(200).await;
    let (mut acked, _) = writers.stop().await;

    // Both followers down; the leader is left alone.
    let leading = leader(&client, &members.iter().collect::<Vec<_>>()).await;
    let alone = (leading.id - 1) as usize;
    let followers: Vec<usize> = (0..3).filter(|&at| at != alone).collect();
    for &at in &followers {
        members[at].kill();
    }
    // One attempt, straight to it: the write is answered "unknown", not acknowledged.
    let lonely = Client::new([members[alone].addr.clone()]).unwrap().retry_for(Duration::ZERO);
    match lonely.put(-5, b"during the outage".to_vec()).await {
        Err(ClientError::Unavailable(message)) => assert!(message.contains("unknown"), "{message}"),
        other => panic!("a write without a majority: {other:?}"),
    }
    match lonely.get(0).await {
        Err(ClientError::Unavailable(_)) => {}
        other => panic!("a linearizable read without a majority: {other:?}"),
    }

    // One follower back: a majority again.
    members[followers[0]].start();
    let index = client.put(-6, b"after the outage".to_vec()).await.unwrap();
    acked.insert(-6, b"after the outage".to_vec());
    check_through_leader(&client, &acked).await;
    check_member(&client, &members[followers[0]], index, &acked).await;
    // The write of unknown outcome: there with its whole value, or not at all.
    let unknown = client.get(-5).await.unwrap();
    assert!(unknown.is_none() || unknown.as_deref() == Some(&b"during the outage"[..]), "{unknown:?}");
    eprintln!("the write of unknown outcome was {}", if unknown.is_some() { "applied" } else { "not applied" });
}
