"""medscale: biomedical deep learning from a laptop to a supercomputer.

Sleep staging from PSG comes first. Nothing happens at import time.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
