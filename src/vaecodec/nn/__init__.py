"""Neural-network building blocks shared by the models (GDN/IGDN, bounds, conv helpers)."""

from vaecodec.nn.gdn import GDN, IGDN, LowerBound, NonNegativeParametrizer, lower_bound

__all__ = ["GDN", "IGDN", "LowerBound", "NonNegativeParametrizer", "lower_bound"]
