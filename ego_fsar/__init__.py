"""ego_fsar: egocentric and cross-domain few-shot action recognition."""
import warnings

# fvcore.nn scripts a loss function at import time, which torch >= 2.10 reports as deprecated.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

__version__ = "0.1.0"
