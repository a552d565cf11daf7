"""Reading sites, preprocessing volumes, slice datasets and the built-in synthetic data."""
