"""Whole commands as library functions (no argv, no printing): pretrain, adapt-teacher, evaluate
through vidkd.eval, the experiment grid, export and the demo. Only vidkd.cli imports this layer."""
