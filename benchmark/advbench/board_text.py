"""The leaderboard as aligned plain-text tables for the terminal (``advbench leaderboard``).

The same white-box table and transfer matrices as the leaderboard files, each under a one-line
heading, optionally restricted to one dataset and/or one attack.
"""

from __future__ import annotations

import pandas as pd

from advbench.api import AdvbenchError


def select(frame: pd.DataFrame, *, dataset: str | None = None, attack: str | None = None) -> pd.DataFrame:
    """The rows of ``frame`` of ``dataset`` and ``attack`` (None: all); an unknown name is an error
    listing the names the frame holds."""
    for column, wanted, flag in (("dataset", dataset, "--dataset"), ("attack", attack, "--attack")):
        if wanted is None:
            continue
        names = sorted(frame[column].unique())
        if wanted not in names:
            raise AdvbenchError(
                f"{flag} {wanted!r} has no row in this leaderboard; it holds {', '.join(names)}"
            )
        frame = frame[frame[column] == wanted]
    return frame


def _text(table: pd.DataFrame, index: bool) -> str:
    return table.to_string(index=index, float_format=lambda v: f"{v:.2f}", na_rep="-")


def render(frame: pd.DataFrame, *, dataset: str | None = None, attack: str | None = None) -> str:
    """The white-box table and every transfer matrix of the selected rows, as aligned text."""
    from advbench.tables import transfer_tables, whitebox_table

    rows = select(frame, dataset=dataset, attack=attack)
    white = whitebox_table(rows)
    white["eps"] = white["eps"].map("{:g}".format)  # a budget, not a measurement: no decimals
    parts = ["White-box mAP drop (points; columns: victim attacked and evaluated)", _text(white, False)]
    for (name, label, eps), table in transfer_tables(rows).items():
        parts += [
            "",
            f"Transfer {name} / {label} / eps {eps:g}: adversarial mAP (%; rows: crafted on, columns: evaluated on)",
            _text(table, True),
        ]
    return "\n".join(parts) + "\n"
