//! Summaries of datasets, score runs and selections.
