"""The KKT reconstruction attack: its config, the closed-form MLP kernel, restart selection, the optimiser,
convergence and the facts it records."""
