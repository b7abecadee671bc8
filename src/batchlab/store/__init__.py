"""A study's results: the SQLite store, the outcome records it holds, and (in :mod:`batchlab.store.frames`)
its tables as pandas data frames and exports.  Plain data: never imports JAX.

The study layer writes here (:mod:`batchlab.study.runner`); the analysis and report layers, and
``batchlab study status | report | compare | export``, only read.

Example::

    from batchlab.store import FINISHED, open_store
    from batchlab.store.frames import trials_frame
    with open_store("runs/quick") as store:
        trials = trials_frame(store)
    trials[trials["status"].isin(FINISHED)]
"""

from batchlab.store.database import DB_NAME, LOCK_NAME, StudyStore, check_output_folder, open_store, runner_active
from batchlab.store.outcome import FAILED, FINISHED, TrackOutcome, TrialOutcome, failed_outcome

__all__ = [
    "DB_NAME",
    "FAILED",
    "FINISHED",
    "LOCK_NAME",
    "StudyStore",
    "TrackOutcome",
    "TrialOutcome",
    "check_output_folder",
    "failed_outcome",
    "open_store",
    "runner_active",
]
