"""Attacks: the seam every attack implements (base), the registry by name, and the built-in KKT attack (kkt/)."""
