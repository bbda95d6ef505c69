"""NVIDIA DreamDojo (Cosmos-Predict2.5 action-conditioned DiT + Wan2.1 VAE), runner family ``dreamdojo``.

Modules: ``config`` (dataclasses, 2B and tiny configs), ``dit`` (the network), ``vae``
(Wan2.1 VAE wrapper), ``loader`` (strict checkpoint loading), ``text_embedding`` (the
constant empty-prompt embedding), ``pipeline`` (chunked autoregressive rollout),
``runner`` (the engine's Runner), ``convert`` (``dream convert``) and ``hub``
(``dream pull``). Importing this package imports no torch.
"""
