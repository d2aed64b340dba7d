"""Example worker classes for a HouseParty cluster, imported by path from the checkout."""
