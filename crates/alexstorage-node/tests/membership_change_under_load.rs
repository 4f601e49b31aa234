//! Membership changes while writes go on: three members as processes, a fourth added
//! as a learner (after the leader purged its log, so it joins from a snapshot) and
//! promoted while one of the first three is removed, all under a steady load. Every
//! acknowledged write is then on the new member and readable through the leader; every
//! member knows the new membership; and the change is real: with the removed member and
//! one more of the old ones killed, the leader and the new member still commit, which
//! only the new membership allows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alexstorage_node::Client;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_added_and_another_removed_while_writes_go_on() {
    let root = tempfile::tempdir().unwrap();
    let flags = ["--snapshot-every", "200", "--keep-logs", "50"];
    let mut members = start_members(root.path(), 3, &flags);
    // The new member builds no snapshot of its own: one it holds came from the leader.
    members.push(Member::new(root.path(), 4, &["--snapshot-every", "1000000000"]));
    let addrs = addrs(&members[..3]);
    let client = Arc::new(Client::new(addrs).unwrap().retry_for(std::time::Duration::from_secs(30)));
    client.init(&members[0].addr, membership(&members[..3])).await.unwrap();

    let writers = Writers::start(Arc::clone(&client), 4);
    writers.until_acked(300).await;
    eventually("the leader purging its log", || async {
        let leading = leader(&client, &members[..3].iter().collect::<Vec<_>>()).await;
        (leading.purged? > 0).then_some(())
    })
    .await;
    // A fourth member joins as a learner (the call returns once it is within
    // openraft's replication lag threshold of the leader) ...
    members[3].start();
    client.add_learner(4, &members[3].addr).await.unwrap();
    eventually("the learner holding the leader's snapshot", || async {
        client.status(&members[3].addr).await.ok()?.snapshot.map(drop)
    })
    .await;
    let during = writers.acked();
    writers.until_acked(during + 200).await;
    // ... and becomes a voter in place of a follower.
    let leading = leader(&client, &members[..3].iter().collect::<Vec<_>>()).await;
    let removed = (1..=3).find(|&id| id != leading.id).unwrap();
    let voters: BTreeSet<u64> = (1..=4).filter(|&id| id != removed).collect();
    client.change_membership(voters.clone()).await.unwrap();
    let after = writers.acked();
    writers.until_acked(after + 300).await;
    let (acked, failed) = writers.stop().await;
    eprintln!("{} writes acknowledged, {failed} failed; member {removed} removed", acked.len());

    let running: Vec<&Member> = members.iter().filter(|member| member.id != removed).collect();
    let leading = leader(&client, &running).await;
    assert_eq!(leading.voters, voters, "the leader's voters");
    check_through_leader(&client, &acked).await;
    for member in &running {
        let status = check_member(&client, member, leading.last_applied.unwrap(), &acked).await;
        assert_eq!(status.voters, voters, "member {}'s voters", member.id);
        let known: BTreeSet<u64> = status.nodes.keys().copied().collect();
        assert_eq!(known, voters, "member {} knows no other member (no joint config left)", member.id);
    }

    // The removed member and the other old follower killed: under the old voters
    // {1, 2, 3} the leader alone could commit nothing; under the new ones it and the
    // new member are a majority.
    let other = voters.iter().copied().find(|&id| id != leading.id && id != 4).unwrap();
    members[(removed - 1) as usize].kill();
    members[(other - 1) as usize].kill();
    let index = client.put(-7, b"after the removal".to_vec()).await.unwrap();
    let last: BTreeMap<i64, Vec<u8>> = std::iter::once((-7, b"after the removal".to_vec())).collect();
    check_member(&client, &members[3], index, &last).await;
    check_through_leader(&client, &last).await;
}
