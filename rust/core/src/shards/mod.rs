//! Megatron-LM MMIDIDX token shards and multi-shard datasets (see docs/FORMATS.md).
