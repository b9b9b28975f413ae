"""Writing frame sequences as GIF (Pillow) or MP4 (imageio + ffmpeg), atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wm.errors import UsageError
from wm.io.artifact import commit

MEDIA_SUFFIXES = (".gif", ".mp4")


def check_media_path(out: Path) -> None:
    """Raise UsageError unless `out` ends in .gif or .mp4."""
    if out.suffix.lower() not in MEDIA_SUFFIXES:
        raise UsageError(f"--out {out} must end in .gif or .mp4.")


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of [T, H, W, 3] frames by an integer factor."""
    return frames if scale == 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


def side_by_side(columns: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frame stacks [T, H, W_i, 3] uint8 placed left to right, `gap` white pixels apart."""
    white = np.full((*columns[0].shape[:2], gap, 3), 255, np.uint8)
    parts = [part for column in columns for part in (white, column)][1:]
    return np.concatenate(parts, axis=2)


def write_video(frames: np.ndarray, out: Path, fps: float) -> None:
    """Write [T, H, W, 3] uint8 frames to `out` (.gif or .mp4) via a temporary file in the same folder."""
    check_media_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.stem}.tmp{out.suffix}"
    try:
        if out.suffix.lower() == ".gif":
            from PIL import Image

            images = [Image.fromarray(frame) for frame in frames]
            images[0].save(temporary, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
        else:
            import imageio.v2 as imageio

            # Frame sides rounded up to a multiple of 16, as H.264 wants.
            height, width = frames.shape[1:3]
            padded = np.zeros((len(frames), -(-height // 16) * 16, -(-width // 16) * 16, 3), np.uint8)
            padded[:, :height, :width] = frames
            with imageio.get_writer(temporary, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
                for frame in padded:
                    writer.append_data(frame)
        commit(temporary, out, seal_it=False)  # refuses to replace a file another program wrote there meanwhile (wm.io.lock)
    finally:
        temporary.unlink(missing_ok=True)


def labelled_columns(columns: list[np.ndarray], labels: list[str], scale: int) -> np.ndarray:
    """Frames side by side [T, header + 64*scale, n * (64*scale + 2), 3] with a caption over each column."""
    from PIL import Image, ImageDraw

    columns = [upscale(c, scale) for c in columns]
    body = side_by_side(columns)
    header = Image.new("RGB", (body.shape[2], 14), "white")
    draw = ImageDraw.Draw(header)
    width = columns[0].shape[2] + 2
    for i, label in enumerate(labels):
        draw.text((i * width + 3, 1), label, fill="black")
    header_array = np.broadcast_to(np.asarray(header), (len(body), *np.asarray(header).shape))
    return np.concatenate([header_array, body], axis=1)
