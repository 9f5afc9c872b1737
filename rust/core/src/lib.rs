//! miniplm-core: the pure-Rust half of miniplm (no Python here).
//!
//! - [`shards`]: Megatron-LM `MMIDIDX` token shards (read, write, multi-shard datasets).
//! - [`scores`]: per-instance teacher/reference scores (score runs and plain `.npy`).
//! - [`select`]: exact, streaming, multi-threaded top-K Difference Sampling and baselines.
//! - [`build`]: copy a selection into new shards.
//! - [`inspect`]: summaries of datasets, score runs and selections.
//! - [`stats`]: value summaries and histograms that `select` and `inspect` share.

pub mod error;
pub mod fsutil;
pub mod job;
pub mod npy;
pub mod output;
pub mod rng;

pub use error::{Error, Result};
pub use job::{Job, NoProgress, Progress};
pub mod build;
pub mod inspect;
pub mod scores;
pub mod select;
pub mod shards;
pub mod stats;
