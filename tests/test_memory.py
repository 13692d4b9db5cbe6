"""The large-buffer pool: a buffer is handed out again only once nothing else refers to its memory."""

import pytest
import torch

import domainaug as da
from domainaug.core.kernels import memory

SHAPE = (3, 1024, 1024)          # 12 MiB: above HUGE_MIN_BYTES


@pytest.fixture
def pool(monkeypatch):
    fresh = memory._Pool(64 << 20)
    monkeypatch.setattr(memory, "_POOL", fresh)
    return fresh


def test_a_buffer_is_reused_only_once_every_reference_is_gone(pool):
    a = memory.empty(SHAPE, torch.float32)
    ptr = a.data_ptr()
    a.fill_(1.0)
    view, array = a[1], a.numpy()
    del a
    b = memory.empty(SHAPE, torch.float32)                  # a view and a numpy array still hold it
    assert b.data_ptr() != ptr and memory.pool_bytes() == 0
    del view
    c = memory.empty(SHAPE, torch.float32)
    assert c.data_ptr() != ptr and float(array[0, 0, 0]) == 1.0
    del array
    assert memory.pool_bytes() >= 12 << 20
    d = memory.empty(SHAPE, torch.float32)
    assert d.data_ptr() == ptr and memory.pool_bytes() == 0
    assert {b.data_ptr(), c.data_ptr(), d.data_ptr()} == {b.data_ptr(), c.data_ptr(), ptr}


def test_other_dtypes_and_sizes_share_buffers_within_a_quarter(pool):
    a = memory.empty((12, 1024, 1024), torch.float32)                          # 48 MiB
    ptr = a.data_ptr()
    del a
    assert memory.empty(SHAPE, torch.float32).data_ptr() != ptr                 # 12 MiB: not in a 50 MiB buffer
    b = memory.empty((12, 1024, 1024), torch.int32)
    assert b.data_ptr() == ptr and b.dtype == torch.int32 and b.shape == (12, 1024, 1024)
    assert memory.empty((1, 1024, 1024), torch.float32).untyped_storage().nbytes() == 4 << 20   # small: not pooled


def test_a_buffer_moved_to_shared_memory_is_never_reused(pool):
    a = memory.empty(SHAPE, torch.float32)
    a.share_memory_()                   # (what a DataLoader worker does to a tensor it sends back)
    del a
    b = memory.empty(SHAPE, torch.float32)
    assert len(pool.entries) == 1 and pool.entries[0].raw.untyped_storage().data_ptr() <= b.data_ptr()
    assert not b.untyped_storage().is_shared()


def test_buffers_tracked_stay_under_the_limit_at_all_times(pool):
    pool.limit = 30 << 20
    buffers = [memory.empty(SHAPE, torch.float32) for _ in range(5)]        # 5 x 14 MiB: 2 tracked, 3 plain
    assert len(pool.entries) == 2
    del buffers
    assert memory.pool_bytes() <= 30 << 20                                  # without another call
    a = memory.empty(SHAPE, torch.float32)                                  # takes a tracked one
    assert len(pool.entries) == 2 and memory.pool_bytes() == 14 << 20 and a.shape == SHAPE


def test_a_buffer_held_only_through_its_storage_is_not_reused(pool):
    a = memory.empty(SHAPE, torch.float32)
    a.fill_(1.0)
    storage, offset = a.untyped_storage(), a.storage_offset()
    del a
    memory.empty(SHAPE, torch.float32).fill_(2.0)
    kept = torch.empty(0).set_(storage, offset, SHAPE)
    assert float(kept[0, 0, 0]) == 1.0 and float(kept[-1, -1, -1]) == 1.0


def test_a_fork_while_another_thread_holds_the_pool_lock_does_not_hang_the_child(pool):
    import os
    import time
    with pool.lock:                                     # (as if another thread were inside empty())
        pid = os.fork()
        if pid == 0:                                    # the child: allocate, then leave at once
            try:
                memory.empty(SHAPE, torch.float32)
            finally:
                os._exit(0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the pool's lock")
    assert os.waitstatus_to_exitcode(status) == 0


def test_no_pool_when_the_limit_is_zero(pool):
    pool.limit = 0
    a = memory.empty(SHAPE, torch.float32)
    assert pool.entries == [] and a.shape == SHAPE


def test_outputs_kept_by_the_caller_are_never_overwritten(pool):
    # two transforms' outputs alive at once: different buffers; the first keeps its values
    sample = da.Sample.from_numpy(torch.rand(4, 1024, 1024).numpy(), spacing=(1.0, 1.0))
    first = da.Rot90(k=1)(sample, torch.Generator())["image"]
    kept = first.clone()
    second = da.Rot90(k=1)(da.Rot90(k=1)(sample, torch.Generator()), torch.Generator())["image"]
    assert first.data_ptr() != second.data_ptr() and torch.equal(first, kept)
    assert torch.equal(second, torch.rot90(sample["image"], 2, [1, 2]))
