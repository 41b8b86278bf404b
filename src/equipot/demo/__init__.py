"""``equipot demo``: EMT copper data → trained model → test errors, on a fresh machine."""

from equipot.demo.pipeline import DemoResult, demo_config, run_demo

__all__ = ["DemoResult", "demo_config", "run_demo"]
