"""The book's look: headless backend, seaborn theme, one colour per model family, and glue for figures.

Each model family keeps one colour in every chapter (ResNet blue, ViT orange, AlterNet green,
pre-activation ResNet grey); MSA units are shaded in one colour in every by-depth figure.
"""

from __future__ import annotations

import matplotlib

if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    try:  # headless by default; notebooks keep their inline backend
        import IPython  # noqa: F401

        if IPython.get_ipython() is None:
            matplotlib.use("Agg")
    except ImportError:
        matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lib.models.units import KIND_LABELS  # noqa: F401  (re-exported: lib.plots.KIND_LABELS)
from lib.profiles import ROLE_LABELS as LABELS  # noqa: F401  (re-exported: lib.plots.LABELS)

sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
pd.set_option("display.max_colwidth", None)  # tables show whole cells: no claim or model cut at 50 characters

COLORS = {"resnet": "#1f77b4", "vit": "#ff7f0e", "alternet": "#2ca02c", "preresnet": "#7f7f7f"}
DPI = 160  # figures are drawn wider than the content column (740 px) and scaled down to it by _static/figures.css
MSA_SHADE = "#d9d9d9"  # background of MSA units in by-depth figures
KIND_MARKERS = {"stem": "s", "conv": "o", "msa": "D", "mlp": "^"}


def glue_figure(name: str, fig: plt.Figure) -> None:
    """Hand ``fig`` to myst-nb's ``glue`` as a PNG (for a numbered, captioned ``{glue:figure}``), then close it.

    Rendering the PNG here makes the output independent of the kernel's matplotlib backend.
    """
    import io

    from IPython.display import Image
    from myst_nb import glue

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    glue(name, Image(buffer.getvalue()), display=False)
