"""Drawer forms: the shared base, and one module per provider."""
