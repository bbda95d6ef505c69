"""The built-in pusht-96 world model: module + config (`model`), strict safetensors
loader (`loader`), and the engine runner (`runner`). Shipped weights live in `weights/`.

Importing this package imports nothing heavy; import the submodules you need.
"""
