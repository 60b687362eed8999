"""One module per area; each lists its algorithm classes in ``ALGORITHMS``."""
