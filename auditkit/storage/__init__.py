"""Storage: atomic writes inside a chosen folder, one output folder per run, safe reading, fingerprints."""
