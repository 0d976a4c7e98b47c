"""tqdm progress bars, imported only when one is shown (importing tqdm costs start-up time)."""

import sys


class _NoBar:
    """Stands in for a tqdm bar that is not shown."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None, leave: bool = False):
    """Return a tqdm bar, or a silent stand-in.

    Parameters
    ----------
    enabled : bool or None
        Show the bar; None shows it only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave)
