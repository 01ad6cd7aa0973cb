"""The tiled chip: word-addressed activation memory, weight ring, skips by address, pooling.

Nothing in it grows with the image size (see ``params.py``); its binary interface is
``format.py``.
"""
