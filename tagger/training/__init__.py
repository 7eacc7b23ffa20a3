"""Training heads: the config's heads from the warehouse (from_warehouse) and one head from labelled
files (from_files)."""
