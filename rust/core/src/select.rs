//! Exact, streaming, multi-threaded top-K Difference Sampling and its baselines.
