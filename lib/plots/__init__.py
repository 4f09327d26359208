"""Every figure of the book: one function per kind, tidy data in, a matplotlib Figure out.

``style`` sets the theme once and holds the colours; one module per chapter's kind of figure.
Chapters call ``lib.plots.<function>`` and hand the figure to ``glue_figure``.
"""

from .style import COLORS, KIND_LABELS, KIND_MARKERS, LABELS, MSA_SHADE, glue_figure, show_figure  # noqa: F401, I001  (style first: sets the backend)
from .cast import image_grid, training_curves  # noqa: F401  (re-exported: lib.plots.<figure>)
from .curvature import eigenvalue_spectra, loss_landscapes, spectral_densities  # noqa: F401
from .frequency import by_depth, noise_at, noise_sweep, relative_log_amplitude_curves  # noqa: F401
from .stages import *  # noqa: F403  (Chapter 3's figures; see lib/plots/stages.py)
from .alternet import accuracy_by_fraction, build_up  # noqa: F401  (Chapter 4's figures)
from .travel import travel  # noqa: F401  (the direction of travel of a chapter's checks)
