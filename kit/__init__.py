"""kit: a solution kit for the Google Landmark Recognition challenge (GLDv2)."""

__version__ = "0.1.0"
