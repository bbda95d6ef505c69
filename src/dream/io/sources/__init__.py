"""Built-in sources: dir, hf, s3, lerobot (each imports its dependencies lazily)."""
