"""Built-in sinks: dir, s3, hf (each imports its dependencies lazily)."""
