"""Teacher / reference scoring of token shards into score runs (``miniplm score``)."""
