//! A replicated AlexStorage key-value store: one [openraft](https://docs.rs/openraft/0.9)
//! member a process, each on its own AlexStorage store (through
//! [`alexstorage_raft`]), talking HTTP to the others, and serving clients over HTTP.
//!
//! - [`server`]: a member ([`Node`]): its store, openraft, and the HTTP routes.
//! - [`network`]: openraft's RPCs between members over HTTP.
//! - [`client`]: a [`Client`] that finds the leader and retries through failovers.
//! - [`api`]: the JSON bodies they exchange.
//!
//! The `alexstorage-node` binary runs one member; see the README's "Replication"
//! section for a three-member cluster.
//!
//! # What survives what
//! A write is acknowledged once a majority of the voters hold it in their Raft log on
//! stable storage (each member flushes its log before it reports an append) and the
//! leader applied it. So with three voters, any one member may crash, lose power, or be
//! killed at any moment without losing an acknowledged write, and the other two go on
//! serving (after a new leader's election: writes stopped for 2.3 to 2.9 s when the leader
//! was killed in the heavy check of the README). A member that comes back
//! resumes from its own store and catches up from the leader's log, or from a snapshot
//! if the leader purged the entries it lacks. Losing two of three members stops writes
//! (no majority) until one returns; nothing acknowledged is lost as long as a majority
//! of the voters keep their stores.
//!
//! # Example
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use alexstorage_node::Client;
//!
//! let client = Client::new(["127.0.0.1:21001", "127.0.0.1:21002", "127.0.0.1:21003"])?;
//! let index = client.put(7, b"seven".to_vec()).await?;
//! assert_eq!(client.get(7).await?.as_deref(), Some(&b"seven"[..]));
//! # let _ = index;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod client;
mod coalesce;
pub mod network;
pub mod server;

pub use client::{Client, ClientError};
pub use server::{raft_config, Node, NodeConfig, NodeError};
