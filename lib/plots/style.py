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

# Every figure is drawn at the content column's width (COLUMN), so its text shows at the size it is
# drawn; no text below 9 pt (tests/test_plots_readable.py measures every figure of this package)
COLUMN = 7.7  # inches: the content column's 740 px at a browser's 96 px per inch
SMALLEST_POINTS = 9.0
sns.set_theme(context="notebook", style="whitegrid", rc={
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11})
pd.set_option("display.max_colwidth", None)  # tables show whole cells: no claim or model cut at 50 characters


def frame_html(frame: pd.DataFrame) -> str:
    """A table as the chapters show it: without pandas' 0, 1, 2 … row numbers, which say nothing.

    An unnamed integer index is row numbers (a range, or what is left of one after a filter or a
    concat); any other index (named, labels, several levels) is kept.
    """
    plain = frame.index.nlevels == 1 and frame.index.name is None and pd.api.types.is_integer_dtype(frame.index)
    return frame.to_html(index=not plain, border=0, notebook=True, max_rows=pd.get_option("display.max_rows"),
                         max_cols=pd.get_option("display.max_columns"), show_dimensions=False)


def _show_frames_without_row_numbers() -> None:
    try:
        import IPython

        shell = IPython.get_ipython()
    except ImportError:
        return
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)


_show_frames_without_row_numbers()

COLORS = {"resnet": "#1f77b4", "vit": "#ff7f0e", "alternet": "#2ca02c", "preresnet": "#7f7f7f"}
DPI = 160  # sharp on high-density screens; _static/figures.css scales each PNG to the content column
MSA_SHADE = "#d9d9d9"  # background of MSA units in by-depth figures
KIND_MARKERS = {"stem": "s", "conv": "o", "msa": "D", "mlp": "^"}


def displayed_points(fig: plt.Figure) -> float:
    """The smallest font size of ``fig``'s visible text as a reader sees it on the page, in points.

    The page scales each figure to the content column (``_static/figures.css``), so text drawn at
    ``s`` points in a figure saved ``w`` inches wide (``bbox_inches="tight"`` crops it) shows at
    ``s · COLUMN / w``.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * COLUMN / width


def legend_above(ax_or_fig, handles=None, labels=None, *, ncol: int | None = None, **kw):
    """A one-row legend above the axes (or figure), where it never hides data or a zero line."""
    if handles is None:
        handles, labels = (ax_or_fig.axes[0] if isinstance(ax_or_fig, plt.Figure) else ax_or_fig).get_legend_handles_labels()
    where = (dict(loc="lower center", bbox_to_anchor=(0.5, 1.0)) if isinstance(ax_or_fig, plt.Figure)
             else dict(loc="lower left", bbox_to_anchor=(0, 1.02)))
    options = dict(frameon=False, ncol=ncol or len(handles), borderaxespad=0, handlelength=1.6, columnspacing=1.2)
    return ax_or_fig.legend(handles, labels, **{**where, **options, **kw})


def plain_log_axis(axis, span: tuple[float, float] | None = None) -> None:
    """1-2-5 ticks on a log axis written as plain numbers (0.2, 0.5, 1, 2), not as powers of ten.

    Given the axis's ``span`` (low, high), the ticks follow its width: 1-10-100 over 2.5 decades
    or more, 1…9 under half a decade (where matplotlib would label overlapping minor ticks).
    """
    import math

    from matplotlib import ticker

    decades = math.log10(span[1] / span[0]) if span else 1.0
    subs = (1.0,) if decades >= 2.5 else (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(range(1, 10))
    axis.set_major_locator(ticker.LogLocator(subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def kind_legend(fig: plt.Figure, kinds, seeds=()) -> None:
    """One legend above the figure for the unit kinds (marker shapes), in neutral grey: colours are the models'.

    ``seeds``: the replicate training seeds drawn thin (:func:`replicate_data`), named by one more entry.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker=KIND_MARKERS.get(k, "o"), color="dimgrey", ms=5,
                      mfc="white" if k == "msa" else "dimgrey") for k in kinds]
    labels = [KIND_LABELS.get(k, k) for k in kinds]
    if seeds:
        handles.append(seeds_handle())
        labels.append(seeds_note(seeds))
    legend_above(fig, handles, labels)


# Another training seed of the same run (lib.chapters.drawn_seeds) is drawn thin and light, behind seed 0
REPLICATE_LINE = dict(lw=0.7, alpha=0.5, zorder=1.5)


def replicate_data(replicates, main) -> dict:
    """The replicate seeds with something to draw, in order (``{}`` for None), each naming only labels ``main`` draws.

    A seed may lack some labels (a run measured on seed 0 only); a label ``main`` does not draw is an error.
    """
    out = {}
    for seed, by_label in sorted((replicates or {}).items()):
        unknown = sorted(set(by_label) - set(main))
        if unknown:
            raise ValueError(f"replicate seed {seed} has {unknown}, which the figure does not draw; it draws {list(main)}")
        if by_label:
            out[seed] = by_label
    return out


def seeds_note(seeds, what: str = "thin lines") -> str:
    """The words naming the replicate seeds a figure draws thin: ``"thin lines: seeds 1, 2"``."""
    seeds = sorted(seeds)
    return f"{what}: seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"


def seeds_handle():
    """A legend handle for the replicate seeds' thin lines: grey, since each takes its model's colour."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color="dimgrey", lw=REPLICATE_LINE["lw"], alpha=REPLICATE_LINE["alpha"])


def legend_entries(ax, seeds=()) -> tuple[list, list]:
    """``ax``'s legend handles and labels, then the note naming the replicate seeds drawn thin, if any."""
    handles, labels = ax.get_legend_handles_labels()
    if seeds:
        handles.append(seeds_handle())
        labels.append(seeds_note(seeds))
    return handles, labels


def seeds_caption(fig: plt.Figure, seeds) -> None:
    """A caption line under the figure naming the replicate seeds drawn thin (for a figure whose legends are full)."""
    if seeds:
        fig.text(0.5, 0.0, seeds_note(seeds), ha="center", va="top", color="dimgrey")


def show_figure(fig: plt.Figure) -> None:
    """Show ``fig`` in the cell's output as a PNG (a figure the prose does not number), then close it."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue()))


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
