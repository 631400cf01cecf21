"""Data: the audit's data contract, the registered data sets and the tasks drawn from them, and a user's arrays."""
