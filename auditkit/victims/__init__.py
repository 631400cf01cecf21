"""Victims: the models scenarios build and train (recipes, DP-SGD), defenses by kind, the victim cache,
and models users saved."""
