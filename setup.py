import re

from setuptools import find_packages, setup

# the version is written once, in minih/version.py (read here without importing minih,
# whose dependencies may not be installed yet)
VERSION = re.search(r'__version__ = "([^"]+)"', open("minih/version.py", encoding="utf-8").read())[1]

setup(
    name="minih",
    version=VERSION,
    description="Watch induction heads form on a CPU: small, exact transformers (attention-only "
                "and with MLPs) with hand-written NumPy and Numba passes.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minih", "minih.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "scipy>=1.10", "numba>=0.59", "matplotlib>=3.7", "tqdm>=4.60"],
    # "cluster": Dask's distributed scheduler, for `minih sweep` on many cores or machines
    extras_require={"test": ["pytest>=7"], "cluster": ["dask[distributed]>=2024.1"]},
    entry_points={"console_scripts": ["minih=minih.__main__:entry"]},
)
