"""feedhook: relay feeds into Discord channels through webhooks."""

__version__ = "0.1.0"
