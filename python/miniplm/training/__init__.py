"""Pre-training reference and student LMs on token shards (``miniplm train``), with the
Vanilla KD baseline."""
