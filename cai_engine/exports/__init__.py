"""Record files -> TRL-format datasets (HF ``datasets`` on disk + parquet + a dataset card)."""
