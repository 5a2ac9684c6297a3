"""Neural-network building blocks shared by the models: GDN / IGDN and their bounds
(:mod:`.gdn`), the checkerboard masked convolution and anchor mask (:mod:`.checkerboard`), and
running a transform in overlapping tiles to bound its memory (:mod:`.tiling`)."""

from vaecodec.nn.gdn import GDN, IGDN, LowerBound, NonNegativeParametrizer, lower_bound

__all__ = ["GDN", "IGDN", "LowerBound", "NonNegativeParametrizer", "lower_bound"]
