"""Auditing a model: the Auditor (the front door), the inputs it accepts, and models users saved."""
