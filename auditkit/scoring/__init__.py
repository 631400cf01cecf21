"""Scoring: matching candidates to samples (metrics), members against non-members, the DP ceiling, the verdict."""
