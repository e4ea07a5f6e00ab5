"""Benchmark tasks loaded, prompted and scored as lmms-eval does.

``get_task(name, path=None, split=None, limit=None, subset=None, seed=0)`` returns a
:class:`~vtwcli.data.base.Task`; ``list_tasks()`` describes every named task. See
docs/datasets.md for the tasks, their sources and metric names.
"""

from vtwcli.data.base import Generation, Record, Source, Task
from vtwcli.data.registry import TASKS, get_task, list_tasks

__all__ = ["TASKS", "Generation", "Record", "Source", "Task", "get_task", "list_tasks"]
