"""Frame preprocessing shared by the pixel environments.

Frames are resized with bilinear filtering (antialiased when shrinking), as the reference code's
`imresize` did, and kept as uint8: scaling to [0, 1] happens in the models, not on disk.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FRAME_SIZE = 64
CARRACING_HUD_ROWS = 84  # rows 84:96 of CarRacing's 96x96 frame are the dashboard


def resize_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8, bilinear."""
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def carracing_frame(frame: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """CarRacing [96, 96, 3] -> bottom HUD cropped -> [size, size, 3] uint8."""
    return resize_frame(frame[:CARRACING_HUD_ROWS], size)
