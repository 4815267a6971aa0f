"""Few-shot episode meter: mean accuracy over episodes and its 95% confidence interval."""
from typing import Dict, List, Sequence, Union

import numpy as np
import torch


class EpisodeMeter:
    """Few-shot episode accuracies: mean and 95% confidence interval.

    ci95 = 1.96 * std / sqrt(n) with the population std (`np.std`, ddof 0), as in the OTAM / TRX /
    MM-CDFSL evaluation code. Accuracies are fractions in [0, 1]; the summary is in percent.
    """

    def __init__(self, way: int, shot: int, query: int):
        self.way, self.shot, self.query = way, shot, query
        self.accuracies: List[float] = []

    def update(self, acc: Union[float, Sequence[float], torch.Tensor]) -> None:
        """Add one episode's accuracy, or several."""
        values = torch.as_tensor(acc, dtype=torch.float64).detach().cpu().numpy().reshape(-1)
        if ((values < 0) | (values > 1)).any():
            raise ValueError(f"episode accuracies must be fractions in [0, 1], got {values.tolist()}")
        self.accuracies.extend(values.tolist())

    def summary(self) -> Dict:
        """`{"_type": "fewshot_test", "acc", "ci95", "episodes", "way", "shot", "query"}` (acc, ci95 in %)."""
        n = len(self.accuracies)
        if n == 0:
            raise RuntimeError("EpisodeMeter.summary called before any update")
        accs = np.asarray(self.accuracies) * 100.0
        return {
            "_type": "fewshot_test",
            "acc": float(accs.mean()),
            "ci95": float(1.96 * accs.std() / np.sqrt(n)),
            "episodes": n,
            "way": self.way,
            "shot": self.shot,
            "query": self.query,
        }
