"""What an explainer supplies for one kind of run (the module explain/<modality>.py, found by
the run's modality's name: no registry of its own): the `explain` command's files, the
reasons `predict --explain K` adds, and the report's importance and mistakes sections."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.errors import ExportError
from scaletrain.run import Assessment, Run


class Explainer:
    def explain(self, run: Run, data, out: Path, rows: int) -> dict:
        """Write explain.html and the numbers behind it into `out`; return the summary."""
        raise ExportError(f"explain does not handle {run.modality.name} runs yet")

    def reasons(self, run: Run, data, k: int) -> pd.DataFrame:
        """The k strongest reasons per row of new input."""
        raise ExportError(f"predict --explain names the reasons of table runs; for {run.modality.name} runs use "
                          "`scaletrain explain RUN DATA`")

    def importance_section(self, run: Run, a: Assessment) -> str:
        """The report's global view of what the model reads, on the test rows."""
        return ""

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        """The report's most confident mistakes (positions `chosen` in the assessment), explained."""
        return ""
