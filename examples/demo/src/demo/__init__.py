"""A tiny package for the tiers demo."""
