"""Prometheus exporter and client for PremierLangage/WIMS code-execution sandboxes."""

__version__ = "0.1.0"
