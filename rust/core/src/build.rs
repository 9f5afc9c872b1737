//! Copy a selection of instances into new Megatron shards.
