"""Built-in sinks: dir, s3, hf.

Importing this package registers them as `RolloutSink.dir/.s3/.hf`; each imports its
third-party packages (pyarrow, boto3, huggingface_hub) only when it is constructed.
"""

from dream.io.sinks.dir import DirRolloutSink
from dream.io.sinks.hf import HfRolloutSink
from dream.io.sinks.s3 import S3RolloutSink

__all__ = ["DirRolloutSink", "HfRolloutSink", "S3RolloutSink"]
