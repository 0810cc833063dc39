"""A progress line for long computations (tqdm), shown only when it helps.

Fits of ordinary size end in well under a second and show nothing; a fit still running
after :data:`DELAY` seconds shows its iterations and the current -logl/N on stderr.
``verbose=None`` (the default everywhere) shows it when stderr is a terminal, True
always, False never.
"""

from __future__ import annotations

import sys

#: seconds before a progress line appears
DELAY = 2.0


def progress_bar(description: str, verbose: bool | None = None, total: int | None = None):
    """A tqdm bar that appears after :data:`DELAY` seconds, or a silent stand-in."""
    show = sys.stderr.isatty() if verbose is None else bool(verbose)
    if not show:
        return _Silent()
    from tqdm.auto import tqdm   # imported here: only long runs need it

    return tqdm(desc=description, total=total, delay=DELAY, leave=False, unit="it",
                dynamic_ncols=True)


class _Silent:
    """The part of tqdm's interface the package uses, doing nothing."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, text, refresh=True):
        pass

    def close(self):
        pass
