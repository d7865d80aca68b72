"""Rex's benchmark harness: ``python -m bench run --backend sqlite --duration 20 --max``."""
