"""The `oasis` dispatcher and its cluster resolution, without a cluster (the live paths run in test_readme.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from oasis_cli.cluster import ClusterChoiceError, find_cluster
from oasis_cli.main import COMMANDS, main


def test_no_command_prints_the_commands_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in COMMANDS)


def test_a_misspelt_command_is_named_with_its_closest_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulat"]) == 2
    assert "unknown command 'simulat'; did you mean 'simulate'?" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "example" in out, out


def test_a_delegated_command_passes_its_arguments_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--hct", "paper", "--demand", "llama-3-8b:LISO=0.0114", "--gpus", "8"]) == 0
    assert "feasible: the inventory meets the SLO" in capsys.readouterr().out


def test_local_means_no_cluster_and_a_silent_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert find_cluster().cluster is None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ClusterChoiceError, match=f"nothing answers at {closed} \\(from --address\\)"):
        find_cluster(closed)


def test_a_stale_address_file_is_skipped_and_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(gone)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        discovery = find_cluster()
    except ClusterChoiceError:
        pytest.skip("several Ray clusters run on this machine; the stale file was passed over all the same")
    assert discovery.cluster is None or discovery.cluster.address != gone
    assert any(f"nothing answers at {gone}" in note for note in discovery.notes)
