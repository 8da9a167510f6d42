//! The zerodrop binary's library half: the local stack used by the demo, the benchmark
//! and the black-box tests, and the commands themselves.

pub mod admin_attention;
pub mod admin_seal;
pub mod audit;
pub mod bench;
mod bench_reconcile;
pub mod demo;
pub mod endpoint;
pub mod pg_admin;
pub mod proof_cmd;
pub mod psp;
pub mod reconcile_cmd;
pub mod stack;
