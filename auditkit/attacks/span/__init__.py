"""The span attack: membership and training inputs read from the row spaces of a network's dense layers."""
