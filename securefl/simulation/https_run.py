"""Run ``simulate``'s federation as real processes over HTTPS and report it the same way.

:func:`run_https_simulation` provisions a temporary federation from the
options ``simulate`` built (one federation file, :func:`securefl.provision.provision`),
starts one ``securefl server`` process and one ``securefl client`` process
per site on 127.0.0.1, shows the server's status while they run, and then
writes the same ``summary.json`` as the in-process run, with what an audit
needs (the sites' signed records, the auditor's roster, the server's signed
round log) and every process's log.

What differs from the in-process run, and why: each site splits its own CSV
into training and validation rows and transforms it as ``securefl client
--data`` does (signed-log), so accuracies are close to, not equal to, the
in-process ones; the round history has no aggregated metrics (the server's
signed round log does not carry them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from securefl.config import DPConfig, FederationConfig, ModelConfig, ServerConfig, TrainConfig
from securefl.data.csvsource import read_csv
from securefl.data.federations import FederatedData, SiteData, _split_site
from securefl.data.preprocess import signed_log
from securefl.errors import AbortError, SecureFLError
from securefl.params import ParamSpec, load_params, load_vector_into, save_params
from securefl.provision import provision
from securefl.reports import read_record_file
from securefl.reports.server_log import SERVER_LOG_NAME, read_server_log
from securefl.simulation.orchestrator import SimulationResult, SiteOutcome, _local_only_model
from securefl.simulation.processes import (
    Child,
    RunFolder,
    federation_toml,
    free_port,
    simulate_tables,
    spawn,
    wait_all,
    write_site_csvs,
)
from securefl.simulation.site_process import DATA_ENV, FINAL_MODEL, LABEL
from securefl.simulation.trainer import accuracy, default_model

__all__ = ["EXIT_HALTED", "run_https_simulation"]

#: ``securefl server``'s exit code when the federation halted before its plan.
EXIT_HALTED = 5
_TRAIN = "securefl.simulation.site_process:train"

StatusHook = Callable[[dict[str, Any], dict[str, Child]], None]


def run_https_simulation(
    data: FederatedData,
    config: FederationConfig,
    *,
    seed: int = 0,
    out: Path | None = None,
    on_status: StatusHook | None = None,
    timeout: float = 1800.0,
    keep: bool = False,
) -> SimulationResult:
    """The federation as one server and one process per site over loopback HTTPS.

    ``on_status`` is called about once a second with the server's status
    (JSON, as ``securefl status`` shows it) and the running children by
    name; tests use it to kill a site in the middle of a round. Every child
    is stopped when this returns or raises (Ctrl-C included); the run
    folder is removed after a clean run unless ``keep``, and kept and named
    in the error otherwise. ``config`` is the federation ``simulate`` built
    (its every table but the sites, which come from ``data``, the server's
    address, 127.0.0.1 on a free port, and the model, the built-in one over
    ``data``'s features seeded by ``seed``).
    """
    run = RunFolder(keep=keep)
    ok = False
    try:
        fed_file = run.path / "federation.toml"
        tables = simulate_tables(_provisioned(config, data, seed))
        fed_file.write_text(federation_toml(tables, [s.name for s in data.sites]), "utf-8")
        kits = provision(fed_file, run.path / "kits").kits
        csvs = write_site_csvs(data, run.path / "data", label=LABEL)
        logs = run.path / "logs"
        with run.children() as children:
            server = spawn("server", ["server", "--kit", str(kits["server"])], logs)
            children.append(server)
            by_name: dict[str, Child] = {}
            for site in data.sites:
                child = spawn(
                    site.name,
                    ["client", "--kit", str(kits[site.name]), "--train", _TRAIN],
                    logs,
                    env={DATA_ENV: str(csvs[site.name])},
                )
                children.append(child)
                by_name[site.name] = child
            wait_all(
                children,
                server=server,
                timeout=timeout,
                on_tick=_status_poller(kits[data.sites[0].name], by_name, on_status),
                ok_codes=(0, EXIT_HALTED),
            )
        result = _result(
            data, config.secure, kits, csvs, config.dp, config.train, seed, halted=server.exit_code
        )
        if out is not None:
            _write_outputs(out, kits, [s.name for s in data.sites], logs, result, data)
        ok = True
        return result
    except KeyboardInterrupt:
        raise AbortError(
            f"interrupted; every process was stopped; the run folder is kept: {run.path}"
        ) from None
    except SecureFLError as exc:
        if str(run.path) in str(exc):
            raise
        raise type(exc)(f"{exc} (run folder kept: {run.path})") from None
    finally:
        run.finish(ok)


def _provisioned(config: FederationConfig, data: FederatedData, seed: int) -> FederationConfig:
    """``config`` as the loopback federation runs it: local server, the data's model and sites."""
    rounds = config.rounds
    if rounds.max_weight is None:  # every site pins it: the largest site's example count
        rounds = replace(rounds, max_weight=float(max(s.num_examples for s in data.sites)))
    return replace(
        config,
        rounds=rounds,
        server=ServerConfig(hosts=("127.0.0.1",), port=free_port(), bind="127.0.0.1"),
        model=ModelConfig(features=data.num_features, classes=len(data.classes), seed=seed),
        sites=(),
    )


def _status_poller(
    site_kit: Path, children: dict[str, Child], hook: StatusHook | None
) -> Callable[[], None]:
    from securefl.deploy.status import fetch_status

    def tick() -> None:
        if hook is None:
            return
        try:
            status = fetch_status(site_kit, timeout=2.0)
        except SecureFLError:  # not listening yet, or already stopped
            return
        hook(status, children)

    return tick


def _site_data(name: str, csv: Path, classes: tuple[str, ...], seed: int) -> SiteData:
    """The rows the site trained and validated on, split as ``securefl client`` splits them."""
    table = read_csv(csv, label=LABEL)
    index = {c: i for i, c in enumerate(sorted(classes))}
    y = np.asarray([index[v] for v in table.labels], dtype=np.int64)
    return _split_site(name, signed_log(table.features), y, seed)


def _final_model(kits: dict[str, Path], names: list[str], spec: ParamSpec) -> Any:
    for name in names:
        path = kits[name] / "state" / FINAL_MODEL
        if path.exists():
            return load_params(path, spec)
    return None


def _result(
    data: FederatedData,
    secure: str,
    kits: dict[str, Path],
    csvs: dict[str, Path],
    dp: DPConfig,
    train: TrainConfig,
    seed: int,
    *,
    halted: int | None,
) -> SimulationResult:
    from securefl.provision.kit import Kit

    server_kit = Kit.load(kits["server"])
    names = [s.name for s in data.sites]
    log, _ = read_server_log(
        server_kit.state_dir / SERVER_LOG_NAME,
        federation=server_kit.federation.name,
        public_key=server_kit.roster.identity_keys()["server"],
    )
    entries = [] if log is None else [log.rounds[r] for r in sorted(log.rounds)]
    closing = (log.closing or {}) if log is not None else {}
    history = [
        {
            "round": e["round_id"],
            "status": e["status"],
            "survivors": list(e["survivors"]),
            "num_survivors": len(e["survivors"]),
            "metrics": {},
            "reason": e.get("reason", ""),
        }
        for e in entries
    ]
    completed = sum(1 for e in entries if e["status"] == "aggregated")
    vector = _final_model(kits, names, server_kit.spec) if completed else None
    model: torch.nn.Module | None = None
    if vector is not None:
        model = default_model(data.num_features, len(data.classes))
        load_vector_into(model, vector, server_kit.spec)
    test = None
    if data.x_test is not None and data.y_test is not None:  # transformed as the sites do
        test = (signed_log(np.asarray(data.x_test, dtype=np.float64)), data.y_test)
    outcomes = []
    for name in names:
        site = _site_data(name, csvs[name], data.classes, seed)
        records, _bad = read_record_file(kits[name] / "state" / "records" / f"{name}.jsonl")
        last = records[-1].record if records else None
        sigma = float(last["event"]["noise_multiplier"]) if last else 0.0
        local_val = local_test = nan = float("nan")
        if sigma and records:
            local = _local_only_model(site, len(data.classes), dp, train, len(records), sigma, seed)
            local_val = accuracy(local, site.x_val, site.y_val)
            if test is not None:
                local_test = accuracy(local, *test)
        outcomes.append(
            SiteOutcome(
                name=name,
                num_examples=site.num_examples,
                epsilon=float(last["epsilon"]) if last else 0.0,
                epsilon_budget=dp.epsilon,
                delta=dp.delta,
                noise_multiplier=sigma,
                local_only_accuracy=local_val,
                federated_accuracy=accuracy(model, site.x_val, site.y_val) if model else nan,
                local_only_test_accuracy=local_test,
                rounds_trained=len(records),
            )
        )
    global_accuracy = float("nan")
    if model is not None and test is not None:
        global_accuracy = accuracy(model, *test)
    return SimulationResult(
        secure=secure,
        rounds=max((e["round_id"] for e in entries), default=0),
        rounds_completed=completed,
        finish_reason=str(closing.get("reason", "")),
        halted=str(closing.get("reason", "halted")) if halted == EXIT_HALTED else "",
        global_accuracy=global_accuracy,
        sites=outcomes,
        history=history,
        data=data.source,
    )


def _write_outputs(
    out: Path,
    kits: dict[str, Path],
    names: list[str],
    logs: Path,
    result: SimulationResult,
    data: FederatedData,
) -> None:
    """summary.json and the audit set (records, roster, round log), as the in-process run."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "records").mkdir(exist_ok=True)
    server_state = kits["server"] / "state"
    shutil.copy2(server_state / "roster.json", out / "roster.json")
    shutil.copy2(server_state / SERVER_LOG_NAME, out / SERVER_LOG_NAME)
    for name in names:
        records = kits[name] / "state" / "records" / f"{name}.jsonl"
        if records.exists():
            shutil.copy2(records, out / "records" / f"{name}.jsonl")
    shutil.copytree(logs, out / "logs", dirs_exist_ok=True)
    from securefl.provision.kit import Kit

    spec = Kit.load(kits["server"]).spec
    vector = _final_model(kits, names, spec) if result.trained else None
    if vector is not None:
        save_params(out / "global_model.safetensors", vector, spec)
    (out / "summary.json").write_text(
        json.dumps(result.summary(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
