"""Scans of one internal coordinate (torsion, stretch) and a detector for holes and erratic
forces: ``equipot scan``."""

from equipot.scan.coordinates import Coordinate
from equipot.scan.detect import ScanCheck, check_scan
from equipot.scan.run import Scan, run_scan, torsion_values

__all__ = ["Coordinate", "Scan", "ScanCheck", "check_scan", "run_scan", "torsion_values"]
