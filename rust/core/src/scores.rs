//! Per-instance teacher/reference scores: score runs and plain .npy arrays (see docs/FORMATS.md).
