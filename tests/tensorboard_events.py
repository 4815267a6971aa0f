"""Read back the TensorBoard scalars a run wrote."""
import glob
import os
from typing import Dict, List, Tuple

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(output_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """Tag -> [(step, value)] over every event file of the run folders (`runs-*`) in `output_dir`."""
    found: Dict[str, List[Tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "runs-*", "events.out.tfevents.*"))):
        events = EventAccumulator(path, size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return found
