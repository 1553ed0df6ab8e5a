"""`python -m rrg_tutorial.generate --checkpoint FILE IMAGE [IMAGE]`: print the report a trained checkpoint writes
for one study's images. The code is `rrg_tutorial.evaluate.generate_main` (lesson 16); this file only runs it."""
import sys

from rrg_tutorial.evaluate import generate_main as main

__all__ = ["main"]

if __name__ == "__main__": sys.exit(main())
