//! Raft cluster tests, in process: three real nodes (WAL, state machine, openraft) whose peer
//! calls go through a router that can cut, heal and delay links. Numbered and phased like
//! openraft's own; each prints its phases so that a failure says where it happened.
//!
//!     cargo test -p hermes-raft --test cluster
//!     scripts/raft-soak 20      (the whole set, 20 times in a row)

// This whole binary is test code, and it measures in wall time like the nodes it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod t10_forwarded_writes;
mod t20_leader_loss_during_batched_writes;
mod t30_leases_across_failover;
mod t40_member_removal_under_load;
mod t50_partitioned_leader;
mod t60_follower_reads_its_writes;
mod t70_leadership_transfer;
mod t80_committed_index_on_disk;
mod t90_batches_stay_whole;
