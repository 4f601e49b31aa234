//! A power cut of the whole cluster: three members as processes, writes going on, all
//! three killed at once with SIGKILL, then every page of each member's log that it had
//! not made durable lost (or, in the second round, lost, kept or torn at random), as a
//! power cut could leave them. Restarted, the cluster holds every acknowledged write:
//! a write is acknowledged only once a majority flushed it, so a member's report of a
//! flushed append must come after the sync (a report before it would lose the write
//! on every member here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use alexstorage_node::Client;
use common::*;

/// A few rounds of: load, kill every member, cut the power, restart, check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_power_cut_of_every_member() {
    let root = tempfile::tempdir().unwrap();
    let mut members = start_members(root.path(), 3, &[]);
    let addrs = addrs(&members);
    // The writers' client retries briefly: once every member is down, they give up
    // quickly. The checks' client waits through elections.
    let client = Arc::new(Client::new(addrs.clone()).unwrap().retry_for(Duration::from_secs(2)));
    let checks = Client::new(addrs).unwrap().retry_for(Duration::from_secs(60));
    checks.init(&members[0].addr, membership(&members)).await.unwrap();
    leader(&checks, &members.iter().collect::<Vec<_>>()).await;

    let mut everything = std::collections::BTreeMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..2 {
        let writers = Writers::start_from(Arc::clone(&client), 4, round * 1_000_000);
        writers.until_acked(300).await;
        // Every member killed at once while the writers are still writing.
        Member::kill_together(&mut members);
        let (acked, _) = writers.stop().await;
        everything.extend(acked);
        let mut changed = 0;
        for member in &members {
            changed += if round == 0 {
                // Every page past the last durable mark lost.
                member.cut_power(&mut std::iter::repeat(1))
            } else {
                member.cut_power(&mut std::iter::from_fn(|| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    Some(seed as u8)
                }))
            };
        }
        eprintln!("round {round}: {} writes acknowledged in all, {changed} pages changed by the cut", everything.len());
        for member in &mut members {
            member.start();
        }
        let leading = leader(&checks, &members.iter().collect::<Vec<_>>()).await;
        check_through_leader(&checks, &everything).await;
        let applied = leading.last_applied.unwrap();
        for member in &members {
            check_member(&checks, member, applied, &everything).await;
        }
        if round == 0 {
            // The cut did something: the writes applied after the last flush were lost.
            assert!(changed > 0, "the power cut changed no page");
        }
    }
}
