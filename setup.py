"""Installs the `wm` package (distribution name `wm-worldmodels`; "wm" is taken on the package index).

`stages/` and `pipelines/` live at the top of the repository so the architecture is visible, and
install as `wm.stages` and `wm.pipelines`: nothing named `stages` or `pipelines` lands at the top of
site-packages.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "wm" / "__init__.py").read_text()).group(1)

setup(
    name="wm-worldmodels",
    version=VERSION,
    description="Learned world models (World Models, Dreamer, PlaNet) reproduced end to end with Keras/TensorFlow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["wm", "wm.*"]) + ["wm.stages", "wm.pipelines"],
    package_dir={"wm.stages": "stages", "wm.pipelines": "pipelines"},
    install_requires=[
        "tensorflow~=2.21.0",
        "tf-keras~=2.21.0",  # tensorflow-probability needs tf-keras of tensorflow's minor version
        "tensorflow-probability~=0.25.0",
        "keras>=3.10,<4",
        "gymnasium[box2d]>=1.0,<2",
        "vizdoom>=1.3,<2",
        "cma>=3.3,<5",
        "h5py>=3.11,<3.15",  # the range tensorflow 2.21 accepts
        "click>=8.1,<9",
        "numpy>=1.26,<3",
        "tqdm>=4.66,<5",
        "pillow>=10",  # frame resizing (bilinear, as the reference code's imresize); GIF writing
        "matplotlib>=3.8",  # loss and learning curves (PNG)
        "tensorboard>=2.19",  # tf.summary scalars beside metrics.jsonl
        "imageio>=2.34",  # MP4 output of `wm dream`
        "imageio-ffmpeg>=0.5",  # the ffmpeg binary imageio writes MP4 with
        "pyyaml>=6",  # --config FILE.yaml
        "setuptools",  # tensorflow-probability imports distutils
    ],
    extras_require={
        "ray": ["ray[default]>=2.40,<3"],
        "minari": ["minari>=0.5.4,<0.6"],
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5"],
    },
    entry_points={"console_scripts": ["wm = wm.cli:main"]},
)
