//! Membership changes while writes go on: three members as processes, a fourth added
//! as a learner and promoted while one of the first three is removed, all under a
//! steady load. Every acknowledged write is then on the new member and readable
//! through the leader; the removed member is no longer needed (killing it stops
//! nothing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use alexstorage_node::Client;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_added_and_another_removed_while_writes_go_on() {
    let root = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = (1..=4).map(|id| Member::new(root.path(), id, &[])).collect();
    for member in &mut members[..3] {
        member.start();
    }
    let addrs: Vec<String> = members[..3].iter().map(|member| member.addr.clone()).collect();
    let client = Arc::new(Client::new(addrs).unwrap().retry_for(std::time::Duration::from_secs(30)));
    client.init(&members[0].addr, membership(&members[..3])).await.unwrap();
    let first = leader(&client, &members[..3].iter().collect::<Vec<_>>()).await;

    let writers = Writers::start(Arc::clone(&client), 4);
    writers.until_acked(300).await;
    // A fourth member joins as a learner (the call returns once it caught up) ...
    members[3].start();
    client.add_learner(4, &members[3].addr).await.unwrap();
    let during = writers.acked();
    writers.until_acked(during + 200).await;
    // ... and becomes a voter in place of a follower.
    let removed = (1..=3).find(|&id| id != first.id).unwrap();
    let voters: BTreeSet<u64> = (1..=4).filter(|&id| id != removed).collect();
    client.change_membership(voters.clone()).await.unwrap();
    let after = writers.acked();
    writers.until_acked(after + 300).await;
    let (acked, failed) = writers.stop().await;
    eprintln!("{} writes acknowledged, {failed} failed; member {removed} removed", acked.len());

    let running: Vec<&Member> = members.iter().filter(|member| member.id != removed).collect();
    let leading = leader(&client, &running).await;
    assert_eq!(leading.voters, voters, "the leader's membership");
    assert!(!leading.nodes.contains_key(&removed), "the removed member is gone from the membership");
    check_through_leader(&client, &acked).await;
    let applied = leading.last_applied.unwrap();
    for member in &running {
        let status = check_member(&client, member, applied, &acked).await;
        assert_eq!(status.voters, voters, "member {}'s membership", member.id);
    }

    // The removed member is not needed: with it killed, writes still commit on the
    // three voters, and reach the new member.
    members[(removed - 1) as usize].kill();
    let index = client.put(-7, b"after the removal".to_vec()).await.unwrap();
    let last = std::iter::once((-7, b"after the removal".to_vec())).collect();
    check_member(&client, &members[3], index, &last).await;
    check_through_leader(&client, &last).await;
}
