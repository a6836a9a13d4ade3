"""Everything between model text and executed code: sandboxed kernels, the token protocol, the loop."""
