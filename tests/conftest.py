import os
os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU in the test suite
