"""`make bench`: relay's benchmark suite (bench/run.py), not part of the installed package."""
