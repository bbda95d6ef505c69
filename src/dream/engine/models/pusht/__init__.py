"""The built-in pusht-96 world model: pose-space dynamics (`physics`), a renderer of the
scene (`render`), a start-pose fit (`posefit`) and the engine runner (`runner`). The
shipped parameter file lives in `weights/`.

Importing this package imports nothing heavy; import the submodules you need.
"""
