"""The built-in pusht-96 world model: the agent's PD law and the scene's geometry
(`physics`), the block's learned dynamics (`dynamics`), a renderer of the scene
(`render`), a start-pose fit (`posefit`) and the engine runner (`runner`). The shipped
network weights live in `weights/`.

Importing this package imports nothing heavy; import the submodules you need.
"""
