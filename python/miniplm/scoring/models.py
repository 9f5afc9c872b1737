"""Moved to ``miniplm.models`` (training and evaluation load models too); this name is
kept so imports written before the move keep working. New code imports miniplm.models."""

from miniplm.models import *  # noqa: F403
