"""Interrupt an in-process simulation at a known point, as Ctrl-C (or a failing site) would."""

from __future__ import annotations

import pytest

from securefl.simulation import federation as federation_module


def interrupt_when_round_2_opens(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The server loop is interrupted (Ctrl-C lands in the main thread) once round 2 is open."""
    real = federation_module.run_server

    def run_server(driver, transport, **kw):  # type: ignore[no-untyped-def]
        progress = kw.get("on_progress")

        def on_progress(d):  # type: ignore[no-untyped-def]
            if progress is not None:
                progress(d)
            if d.current_round == 2 and d.stage.value == "round open":
                raise error

        kw["on_progress"] = on_progress
        return real(driver, transport, **kw)

    monkeypatch.setattr(federation_module, "run_server", run_server)
