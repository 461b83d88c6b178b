"""Running a learner under caps and observing it (Docker first; a process fallback)."""
