"""Tensor output heads: dipoles, polarisabilities, Born charges, any rank and parity.

``config`` (HeadConfig, name defaults), ``cartesian`` (Cartesian ↔ irreps bases with index
symmetries), ``head`` (the equivariant network of one head), ``collection`` (all heads of a
model: constraints, reduction, the field energy, parity projection for SO(3) models).
"""
