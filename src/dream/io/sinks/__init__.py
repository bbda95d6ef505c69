"""Built-in sinks: dir, s3, hf, lerobot.

Importing this package registers them as `RolloutSink.dir/.s3/.hf/.lerobot`; each imports
its third-party packages (pyarrow, boto3, huggingface_hub, av) only when it is constructed.
"""

from dream.io.sinks.dir import DirRolloutSink
from dream.io.sinks.hf import HfRolloutSink
from dream.io.sinks.lerobot import LeRobotRolloutSink
from dream.io.sinks.s3 import S3RolloutSink

__all__ = ["DirRolloutSink", "HfRolloutSink", "LeRobotRolloutSink", "S3RolloutSink"]
