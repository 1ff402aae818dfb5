"""marllbd_rl.base.side_thread: one worker thread per process, with one torch thread."""

from __future__ import annotations

import multiprocessing

import pytest

torch = pytest.importorskip("torch")

from marllbd_rl import base  # noqa: E402


def _child_runs_a_pass() -> tuple[int, bool]:
    pool = base.side_thread()
    return pool.submit(torch.get_num_threads).result(timeout=30), pool is not _parent_pool


_parent_pool = None


def test_the_side_thread_runs_one_torch_thread_and_a_forked_child_makes_its_own() -> None:
    global _parent_pool
    _parent_pool = base.side_thread()
    assert base.side_thread() is _parent_pool  # one per process
    assert _parent_pool.submit(torch.get_num_threads).result(timeout=30) == 1
    # A forked child inherits the executor object but not its thread: it must make its own
    # (with the parent's, this submit would wait forever; the timeout turns that into an error).
    with multiprocessing.get_context("fork").Pool(1) as pool:
        threads, fresh = pool.apply(_child_runs_a_pass)
    assert (threads, fresh) == (1, True)
