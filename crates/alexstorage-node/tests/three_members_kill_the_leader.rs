//! Three members as separate processes on 127.0.0.1: writes go through the leader,
//! the leader is killed with SIGKILL mid-load, a new leader is elected and writes go
//! on; every acknowledged write is then read back through the new leader and from each
//! survivor's own state machine. The killed member is restarted on its own store and
//! catches up: the leader has meanwhile purged the entries it lacks, so it catches up
//! from a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use alexstorage_node::Client;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_write_and_catches_up_when_restarted() {
    let root = tempfile::tempdir().unwrap();
    // Snapshots every 200 entries, 50 kept behind: the restarted member lags by far more.
    let flags = ["--snapshot-every", "200", "--keep-logs", "50"];
    let mut members: Vec<Member> = (1..=3).map(|id| Member::new(root.path(), id, &flags)).collect();
    for member in &mut members {
        member.start();
    }
    let addrs: Vec<String> = members.iter().map(|member| member.addr.clone()).collect();
    let client = Arc::new(Client::new(addrs.clone()).unwrap().retry_for(std::time::Duration::from_secs(30)));
    client.init(&members[0].addr, membership(&members)).await.unwrap();
    let first = leader(&client, &members.iter().collect::<Vec<_>>()).await;

    let writers = Writers::start(Arc::clone(&client), 4);
    writers.until_acked(400).await;
    // The old leader's log just before the kill: it can hold at most a few more entries
    // (the writes in flight) when it dies.
    let before = client.status(&members[(first.id - 1) as usize].addr).await.unwrap();
    let killed = (first.id - 1) as usize;
    members[killed].kill();
    let at_kill = writers.acked();
    // Writes go on under a new leader: well past a snapshot and the log kept behind it.
    writers.until_acked(at_kill + 1200).await;
    let (acked, failed) = writers.stop().await;
    eprintln!("{} writes acknowledged ({at_kill} before the kill), {failed} failed", acked.len());

    let survivors: Vec<&Member> = members.iter().filter(|member| member.is_running()).collect();
    let second = leader(&client, &survivors).await;
    assert_ne!(second.id, first.id, "a new leader was elected");
    assert!(second.term > first.term);
    check_through_leader(&client, &acked).await;
    let applied = client.status(&members[(second.id - 1) as usize].addr).await.unwrap().last_applied.unwrap();
    for survivor in &survivors {
        check_member(&client, survivor, applied, &acked).await;
    }

    // The leader purged past everything the killed member's log can hold.
    let leading = client.status(&members[(second.id - 1) as usize].addr).await.unwrap();
    let purged = leading.purged.expect("the leader purged its log behind a snapshot");
    assert!(
        purged > before.last_log_index.unwrap() + 100,
        "purged through {purged}, the killed member's log ended near {:?}",
        before.last_log_index
    );

    // Restarted on its own store, it catches up: from a snapshot, as its log is too old.
    members[killed].start();
    let caught_up = check_member(&client, &members[killed], applied, &acked).await;
    assert!(caught_up.snapshot.is_some_and(|snapshot| snapshot > before.last_log_index.unwrap()));
    assert!(caught_up.purged.is_some_and(|index| index > before.last_log_index.unwrap()), "installed a snapshot");
    // And it serves as a member again: a write after it is back reaches it.
    let index = client.put(-1, b"after the restart".to_vec()).await.unwrap();
    check_member(&client, &members[killed], index, &std::iter::once((-1, b"after the restart".to_vec())).collect())
        .await;
    let all = leader(&client, &members.iter().collect::<Vec<_>>()).await;
    assert_eq!(all.voters.len(), 3);

    // More rounds (ALEXSTORAGE_RAFT_KILLS in all, 3 by default): a member killed
    // mid-load, the leader and a follower in turn, restarted, every acknowledged write
    // checked through the leader and on the restarted member.
    let rounds: u64 = std::env::var("ALEXSTORAGE_RAFT_KILLS").ok().and_then(|rounds| rounds.parse().ok()).unwrap_or(3);
    let mut everything = acked;
    everything.insert(-1, b"after the restart".to_vec());
    for round in 1..rounds {
        let writers = Writers::start_from(Arc::clone(&client), 4, round as i64 * 1_000_000);
        writers.until_acked(200).await;
        let leading = leader(&client, &members.iter().collect::<Vec<_>>()).await;
        let victim = if round % 2 == 1 { leading.id } else { leading.id % 3 + 1 };
        members[(victim - 1) as usize].kill();
        let at_kill = writers.acked();
        writers.until_acked(at_kill + 300).await;
        let (acked, failed) = writers.stop().await;
        eprintln!("round {round}: member {victim} killed, {} writes acknowledged, {failed} failed", acked.len());
        everything.extend(acked);
        let survivors: Vec<&Member> = members.iter().filter(|member| member.is_running()).collect();
        let leading = leader(&client, &survivors).await;
        check_through_leader(&client, &everything).await;
        members[(victim - 1) as usize].start();
        check_member(&client, &members[(victim - 1) as usize], leading.last_applied.unwrap(), &everything).await;
    }
}
