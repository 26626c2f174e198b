"""Training: the engine (one loop, used locally and under Ray Train) and its resumable state."""
