"""The harmonize path: plan, translate, fill, and write a site's outputs (docs/architecture.md)."""
