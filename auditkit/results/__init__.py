"""Results: one audit's (per-sample frame, attack facts, summary), a whole run's, the facts they record,
and reading them back."""
