"""``miniplm run``: the whole pipeline with stage skipping, report and plots."""
