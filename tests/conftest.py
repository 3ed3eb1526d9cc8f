"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    # Tiny models: a second intra-op thread only adds contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def only_own_plugins(tmp_path_factory):
    """The registry finds eventrunner's own entry points and those a test installs, nothing else.

    A plugin the user installed (the README's ``lr_monitor``, say) must not change what the tests
    see. Distributions under pytest's temporary folder are the ones tests install.
    """
    from importlib import metadata
    from pathlib import Path

    from eventrunner import registry

    test_root = Path(tmp_path_factory.getbasetemp()).resolve()

    def installed_by_a_test(dist: metadata.Distribution) -> bool:
        return Path(str(dist.locate_file(""))).resolve().is_relative_to(test_root)

    def own_entry_points(**params):
        return [
            ep
            for ep in metadata.entry_points(**params)
            if ep.dist is not None
            and (ep.dist.name == "eventrunner" or installed_by_a_test(ep.dist))
        ]

    # Its own MonkeyPatch: a test's monkeypatch.undo() ("uninstall") must keep the isolation.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "entry_points", own_entry_points)
        registry.refresh()
        yield
    registry.refresh()
