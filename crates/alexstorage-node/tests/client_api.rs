//! The client API of three in-process members: writes through a follower are forwarded
//! and the client follows the leader; batches mix text, bytes and deletes, all at one
//! index; bad requests are refused without a write; many concurrent writes are all
//! acknowledged and readable on every member; a member stopped cleanly starts again
//! from its store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alexstorage_node::api::Operation;
use alexstorage_node::{raft_config, Client, ClientError, Node, NodeConfig};
use reqwest::StatusCode;

async fn start(id: u64, dir: &std::path::Path, addr: &str) -> Node {
    Node::start(NodeConfig { id, addr: addr.into(), dir: dir.join(id.to_string()), raft: raft_config(10_000, 1_000) })
        .await
        .unwrap()
}

/// Waits until every member applied at least `index`.
async fn applied(nodes: &[Node], index: u64) {
    for node in nodes {
        let mut metrics = node.raft().metrics();
        tokio::time::timeout(Duration::from_secs(60), async {
            while metrics.borrow().last_applied.is_none_or(|id| id.index < index) {
                metrics.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_api_through_any_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start(id, dir.path(), "127.0.0.1:0").await);
    }
    let addrs: Vec<String> = nodes.iter().map(|node| node.local_addr().to_string()).collect();
    let members: BTreeMap<u64, String> = (1..=3).zip(addrs.iter().cloned()).collect();
    let admin = Client::new(addrs.clone()).unwrap();
    admin.init(&addrs[0], members.clone()).await.unwrap();
    // A second init is refused.
    assert!(matches!(admin.init(&addrs[0], members).await, Err(ClientError::Refused { .. })));

    // Wait for the leader, then talk to a follower only: the write is forwarded.
    let leader = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(leader) = nodes[0].raft().metrics().borrow().current_leader {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let follower = addrs[(leader % 3) as usize].clone();
    let leader_addr = addrs[(leader - 1) as usize].clone();
    // A write sent to a follower is forwarded: the follower itself answers 200, naming
    // the leader.
    let http = reqwest::Client::new();
    let answer = http.put(format!("http://{follower}/kv/1")).body("one").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers().get("x-alexstorage-leader").unwrap().to_str().unwrap(), leader_addr);
    let client = Client::new([follower.clone()]).unwrap();
    client.put(1, b"one".to_vec()).await.unwrap();
    assert_eq!(client.current().unwrap(), leader_addr, "the client follows the leader it was told of");
    // A read sent to a follower is linearizable: it sees a write acknowledged just
    // before, every time (a follower answering from its own state would lag now and
    // then: it applies a write only after the leader tells it the write committed).
    for round in 0..50 {
        let value = format!("round {round}");
        client.put(10, value.clone()).await.unwrap();
        let answer = http.get(format!("http://{follower}/kv/10")).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.bytes().await.unwrap(), value.as_bytes(), "round {round}");
    }
    // A write of 4 MiB of values is taken (and replicated); one byte more is refused
    // by the server's own check before it reaches the log, as is a batch past it.
    let largest = vec![7u8; 4 << 20];
    client.put(11, largest.clone()).await.unwrap();
    assert_eq!(client.get(11).await.unwrap().as_deref(), Some(&largest[..]));
    let huge = http.put(format!("http://{leader_addr}/kv/12")).body(vec![0u8; (4 << 20) + 1]).send().await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error = huge.text().await.unwrap();
    assert!(error.contains("at most 4194304"), "{error}");
    assert_eq!(client.get(12).await.unwrap(), None);
    let ops = vec![Operation::put(13, &vec![b'a'; 3 << 20]), Operation::put(14, &vec![b'b'; 2 << 20])];
    let refused = client.batch(ops).await;
    assert!(
        matches!(&refused, Err(ClientError::Refused { status: StatusCode::PAYLOAD_TOO_LARGE, message }) if message.contains("at most")),
        "{refused:?}"
    );
    assert_eq!(client.get(13).await.unwrap(), None);
    assert_eq!(client.get(1).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(client.get(2).await.unwrap(), None);

    // A batch: text, bytes that are not text, and a delete, at one index.
    let index = client
        .batch(vec![Operation::put(2, b"two"), Operation::put(3, &[0, 255, 7]), Operation::Delete { key: 1 }])
        .await
        .unwrap();
    assert_eq!(client.get(1).await.unwrap(), None);
    assert_eq!(client.get(2).await.unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(client.get(3).await.unwrap().as_deref(), Some(&[0, 255, 7][..]));
    // A bad batch is refused whole: nothing of it is written.
    let bad = client.batch(vec![Operation::put(4, b"four"), Operation::Put { key: 5, value: None, hex: None }]).await;
    assert!(matches!(bad, Err(ClientError::Refused { status: StatusCode::BAD_REQUEST, .. })), "{bad:?}");
    assert_eq!(client.get(4).await.unwrap(), None);
    let deleted = client.delete(2).await.unwrap();
    assert!(deleted > index);

    // Many writes at once: every one acknowledged, readable on every member.
    let client = Arc::new(client);
    let tasks: Vec<_> = (100..300)
        .map(|key| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.put(key, key.to_string()).await.unwrap() })
        })
        .collect();
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.unwrap());
    }
    applied(&nodes, last).await;
    for node in &nodes {
        for key in 100..300 {
            let value = node.state_machine().get(key).unwrap();
            assert_eq!(
                value.as_deref(),
                Some(key.to_string().as_bytes()),
                "key {key} on member {:?}",
                node.local_addr()
            );
        }
        assert_eq!(node.state_machine().get(2).unwrap(), None);
        assert_eq!(node.state_machine().get(3).unwrap().as_deref(), Some(&[0, 255, 7][..]));
    }

    // A member stopped cleanly starts again from its store, at the same address.
    let stopped = nodes.remove(2);
    let addr = stopped.local_addr().to_string();
    stopped.stop().await.unwrap();
    let again = start(3, dir.path(), &addr).await;
    assert_eq!(again.state_machine().get(150).unwrap().as_deref(), Some(&b"150"[..]));
    nodes.push(again);
    let after = client.put(-1, b"after".to_vec()).await.unwrap();
    applied(&nodes, after).await;
    assert_eq!(client.get_local(&addr, -1).await.unwrap().as_deref(), Some(&b"after"[..]));
    for node in nodes {
        node.stop().await.unwrap();
    }
}
