"""The owner's attack: reconstruction from what training added to the initial weights, which the owner holds."""
