"""Bottom layer: atomic I/O, checkpoints, distributed helpers, SyncBN, runtime. Imports nothing else of vidkd but errors."""
