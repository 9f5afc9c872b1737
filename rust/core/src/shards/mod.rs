//! Megatron-LM `MMIDIDX` token shards and multi-shard datasets (see docs/FORMATS.md).

mod dataset;
mod dtype;
mod fingerprint;
mod manifest;
mod resolve;
mod shard;
mod writer;

pub use dataset::{Dataset, GatherOut};
pub use dtype::TokenDType;
pub use fingerprint::{cache_dir, ShardContent};
pub use resolve::describe;
pub use shard::Shard;
pub use writer::{DatasetWriter, ShardSummary, ShardWriter, WriterCheckpoint};

/// `.idx` magic of Megatron-LM's `MMapIndexedDataset`.
pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// Bytes before the sizes array: magic, u64 version, u8 dtype, u64 count, u64 doc count.
pub const HEADER_LEN: usize = 34;

#[cfg(test)]
mod tests;
