"""Uncertainty: committees, last-layer variance, latent distance, calibration, conformal balls.

Functions of a model's readout features and predictions, used by the calculator, the MD
alarms and ``equipot learn``.
"""
