"""asff-study: a reproducible ablation and analysis study of ASFF (arXiv 1911.09516)."""

__version__ = "0.1.0"
