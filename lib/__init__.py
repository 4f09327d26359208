"""How Do ViTs Work — the reproducible book: the library behind the chapters.

Layers, each handing the next plain values: ``lib.data`` → ``lib.models`` → ``lib.runs``
(training engine ``lib.train``, budgets ``lib.profiles``) → ``lib.analysis`` → ``lib.plots`` →
``lib.book``. Import submodules explicitly (``from lib import data``); nothing heavy is
imported here.
"""

__version__ = "0.1.0"

import warnings as _warnings

# timm imports huggingface_hub, which imports tqdm.auto; in a kernel without ipywidgets that
# warns once. The book's own progress bars are text bars (tqdm.tqdm) and need no widgets.
_warnings.filterwarnings("ignore", message="IProgress not found")
