//! Three members as separate processes on 127.0.0.1: writes go through the leader,
//! the leader is killed with SIGKILL mid-load, a new leader is elected and writes go
//! on; every acknowledged write is then read back through the new leader and from each
//! survivor's own state machine. The killed member is restarted on its own store and
//! catches up: the leader has meanwhile purged the entries it lacks, and the member is
//! restarted unable to build a snapshot of its own, so the snapshot it then holds is
//! the leader's. More rounds (`ALEXSTORAGE_RAFT_KILLS`) kill the leader and a follower
//! in turn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use alexstorage_node::Client;
use common::*;

/// Snapshots every 200 entries, 50 kept behind: a member that misses a few hundred
/// entries needs a snapshot.
const FLAGS: [&str; 4] = ["--snapshot-every", "200", "--keep-logs", "50"];
/// A member restarted with these builds no snapshot of its own during the test.
const NO_SNAPSHOTS: [&str; 4] = ["--snapshot-every", "1000000000", "--keep-logs", "50"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_write_and_catches_up_when_restarted() {
    let root = tempfile::tempdir().unwrap();
    let mut members = start_members(root.path(), 3, &FLAGS);
    let addrs = addrs(&members);
    let client = Arc::new(Client::new(addrs.clone()).unwrap().retry_for(std::time::Duration::from_secs(30)));
    client.init(&members[0].addr, membership(&members)).await.unwrap();

    let writers = Writers::start(Arc::clone(&client), 4);
    writers.until_acked(400).await;
    // The leader as it is now, mid-load; its log just before the kill (it can hold at
    // most the entries in flight more when it dies).
    let first = leader(&client, &members.iter().collect::<Vec<_>>()).await;
    let killed = (first.id - 1) as usize;
    let before = eventually("the leader's status", || async {
        let status = client.status(&members[killed].addr).await.ok()?;
        (status.state == "Leader").then_some(status)
    })
    .await;
    members[killed].kill();
    let killed_at = std::time::Instant::now();
    let at_kill = writers.acked();
    // Reported, never asserted: how long writes stopped (the election and the
    // clients finding the new leader).
    writers.until_acked(at_kill + 1).await;
    eprintln!("writes resumed {} ms after the leader was killed", killed_at.elapsed().as_millis());
    let last_before = before.last_log_index.unwrap();

    // Writes go on under a new leader, until it purged its log well past the killed
    // member's.
    writers.until_acked(at_kill + 200).await;
    let survivors: Vec<&Member> = members.iter().filter(|member| member.is_running()).collect();
    eventually("the new leader purging past the killed member's log", || async {
        let leading = leader(&client, &survivors).await;
        (leading.purged? > last_before + 100).then_some(())
    })
    .await;
    let (acked, failed) = writers.stop().await;
    eprintln!("{} writes acknowledged ({at_kill} before the kill), {failed} failed", acked.len());

    let second = leader(&client, &survivors).await;
    assert_ne!(second.id, first.id, "a new leader was elected");
    assert!(second.term > before.term, "in a later term");
    check_through_leader(&client, &acked).await;
    for survivor in &survivors {
        check_member(&client, survivor, second.last_applied.unwrap(), &acked).await;
    }

    // Restarted on its own store, unable to build a snapshot itself, it catches up
    // from the leader's snapshot: its log is too old for the leader's.
    members[killed].set_flags(&NO_SNAPSHOTS);
    members[killed].start();
    let caught_up = check_member(&client, &members[killed], second.last_applied.unwrap(), &acked).await;
    let snapshot = caught_up.snapshot.expect("the restarted member holds a snapshot");
    assert!(snapshot > last_before + 100, "a snapshot (through {snapshot}) it could only have from the leader");
    // And it serves as a member again: a write after it is back reaches it.
    let index = client.put(-1, b"after the restart".to_vec()).await.unwrap();
    let after: std::collections::BTreeMap<i64, Vec<u8>> =
        std::iter::once((-1, b"after the restart".to_vec())).collect();
    check_member(&client, &members[killed], index, &after).await;
    let all = leader(&client, &members.iter().collect::<Vec<_>>()).await;
    assert_eq!(all.voters.len(), 3);

    // More rounds (ALEXSTORAGE_RAFT_KILLS in all, 3 by default): a member killed
    // mid-load, the leader and a follower in turn, restarted; every acknowledged write
    // checked through the leader, on every survivor and on the restarted member.
    let rounds: u64 = std::env::var("ALEXSTORAGE_RAFT_KILLS").ok().and_then(|rounds| rounds.parse().ok()).unwrap_or(3);
    let mut everything = acked;
    everything.extend(after);
    for round in 1..rounds {
        let writers = Writers::start_from(Arc::clone(&client), 4, round as i64 * 1_000_000);
        writers.until_acked(200).await;
        let leading = leader(&client, &members.iter().collect::<Vec<_>>()).await;
        let victim = if round % 2 == 1 { leading.id } else { leading.id % 3 + 1 };
        members[(victim - 1) as usize].kill();
        let killed_at = std::time::Instant::now();
        let at_kill = writers.acked();
        writers.until_acked(at_kill + 1).await;
        eprintln!(
            "round {round}: writes resumed {} ms after member {victim} was killed",
            killed_at.elapsed().as_millis()
        );
        writers.until_acked(at_kill + 300).await;
        let (acked, failed) = writers.stop().await;
        eprintln!("round {round}: member {victim} killed, {} writes acknowledged, {failed} failed", acked.len());
        everything.extend(acked);
        let survivors: Vec<&Member> = members.iter().filter(|member| member.is_running()).collect();
        let leading = leader(&client, &survivors).await;
        check_through_leader(&client, &everything).await;
        for survivor in &survivors {
            check_member(&client, survivor, leading.last_applied.unwrap(), &everything).await;
        }
        members[(victim - 1) as usize].start();
        check_member(&client, &members[(victim - 1) as usize], leading.last_applied.unwrap(), &everything).await;
    }
}
