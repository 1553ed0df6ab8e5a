"""Make Triton unimportable, as on macOS, Windows or with PyTorch's CPU-only wheels (none of them bring Triton).

Put this folder first on PYTHONPATH (`make test` does, for its no-Triton check): Python imports `sitecustomize` at
start-up, and `sys.modules["triton"] = None` makes `import triton` raise ModuleNotFoundError and
`importlib.util.find_spec("triton")` return None, exactly as when Triton is not installed. Child processes that
inherit PYTHONPATH (papermill's kernels) get the same.
"""
import sys

sys.modules["triton"] = None
