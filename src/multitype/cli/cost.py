"""``multitype cost estimate|recommend|refresh|budget``: time and price from measured speed."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from multitype.cli._common import ConfigDirOpt, RootOpt, project, split_names

app = typer.Typer(help="Time and price per model and instance type; budget alerts.", no_args_is_help=True)
budget_app = typer.Typer(help="AWS Budgets alerts.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]
SpotOpt = Annotated[bool, typer.Option("--spot/--on-demand", help="Price at spot (the catalog's spot price, else "
                                       "on-demand x the runbook's spot ratio) or on-demand.")]


def _names(values: Optional[list[str]]) -> list[str]:
    return [n for v in values or [] for n in split_names(v) or []]


def _table(title: str, caption: str):
    from rich.table import Table

    return Table(title=title, caption=caption, title_justify="left", caption_justify="left")


def _print(table) -> None:
    from rich.console import Console

    Console(width=200).print(table)


@app.command("estimate")
def estimate_cmd(
    models: Annotated[Optional[list[str]], typer.Option("--models", help="Models (comma-separated or repeated; default: models_transformer.yaml's model_name).")] = None,
    instance_types: Annotated[Optional[list[str]], typer.Option("--instance-types", help="Instance types (comma-separated or repeated; default: every GPU type in the catalog).")] = None,
    spot: SpotOpt = True,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Epochs (default: num_epochs of each model).")] = None,
    deadline: Annotated[Optional[str], typer.Option("--deadline", help="Must finish within: 4h, 90m, 1h30m, 2d.")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="USD; exit 2 when the cheapest plan costs more.")] = None,
    as_json: JsonOpt = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Time and price of fine-tuning per model and instance type, cheapest first; the choice marked."""
    from multitype.cloud.cost import duration, money, parse_duration, plan
    from multitype.cloud.prices import load_catalog

    hours = parse_duration(deadline) if deadline is not None else None
    if budget is not None and budget <= 0:
        from multitype.errors import UserError

        raise UserError(f"--budget must be above 0 USD, got {budget:g}")
    proj = project("cost estimate", root, config_dir)
    catalog = load_catalog()
    types = _names(instance_types) or [n for n in catalog.names() if catalog.require(n).gpus]
    names = _names(models) or [proj.configs.transformer.defaults.model_name]
    result = plan(proj, names, types, spot=spot, epochs=epochs, deadline_hours=hours, budget_usd=budget,
                  catalog=catalog)
    chosen = {id(e) for e in result.chosen.values()}
    if as_json:
        typer.echo(json.dumps({
            "catalog": {"date": catalog.date, "source": catalog.source, "path": catalog.path,
                        "utilisation": catalog.utilisation},
            "deadline_hours": hours, "budget_usd": budget,
            "rows": [{**e.to_dict(), "chosen": id(e) in chosen} for e in result.rows],
            "chosen": {m: e.instance_type for m, e in result.chosen.items()},
            "missed": {m: e.instance_type for m, e in result.missed.items()},
            "total_usd": result.total_usd, "total_hours": result.total_hours}, indent=2))
    else:
        startup = catalog.startup_minutes
        table = _table(f"fine-tuning estimate ({'spot' if spot else 'on-demand'})",
                       f"catalog {catalog.date} ({catalog.path}); FLOPs estimates at {catalog.utilisation:.0%} of "
                       f"peak; times include {startup['sagemaker']:g} min (SageMaker) / {startup['ec2']:g} min "
                       "(EC2) start-up per job; * = cheapest" + (" that meets the deadline" if hours else ""))
        for column in ("", "model", "instance type", "USD/h", "samples/s", "time", "USD", "speed", "basis"):
            table.add_column(column, overflow="fold")
        for e in result.rows:
            late = hours is not None and e.hours > hours
            table.add_row("*" if id(e) in chosen else ("late" if late else ""), e.model, e.instance_type,
                          f"{e.usd_hour:.4g}" + (" (est.)" if "estimate" in e.price_basis else ""),
                          f"{e.samples_per_s:.4g}", duration(e.hours), money(e.usd), e.kind, e.basis)
        _print(table)
        if result.chosen:
            typer.echo(f"total: {duration(result.total_hours)}, {money(result.total_usd)} "
                       f"({', '.join(f'{m} on {e.instance_type}' for m, e in result.chosen.items())})")
    result.check(budget)


@app.command("recommend")
def recommend_cmd(
    task: Annotated[str, typer.Option("--task", help="preprocess | baseline | fine-tune | inference.")],
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="For fine-tune and inference (default: models_transformer.yaml's model_name).")] = None,
    service: Annotated[Optional[str], typer.Option("--service", help="sagemaker or ec2 (default: both).")] = None,
    spot: SpotOpt = False,
    as_json: JsonOpt = False,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Instance types for a task, computed from the model, the configured batch and the data; with estimates."""
    from multitype.cloud.cost import duration, money
    from multitype.cloud.prices import load_catalog
    from multitype.cloud.recommend import TASKS, recommend
    from multitype.errors import UserError

    if task not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if service not in (None, "sagemaker", "ec2"):
        raise UserError(f"--service must be sagemaker or ec2, got {service!r}")
    proj = project("cost recommend", root, config_dir)
    catalog = load_catalog()
    found = [r for s in ([service] if service else ["sagemaker", "ec2"])
             for r in recommend(proj, task, model_name, service=s, spot=spot, catalog=catalog)]
    if as_json:
        typer.echo(json.dumps([{"task": r.task, "instance_type": r.instance_type, "usd_hour": r.usd_hour,
                                "need_gib": round(r.need_gib, 2), "has_gib": r.has_gib, "reason": r.reason,
                                "usd_per_1k_predictions": r.usd_per_1k,
                                "estimate": r.estimate.to_dict() if r.estimate else None} for r in found], indent=2))
        return
    table = _table(f"instance types for {task}", f"catalog {catalog.date}; cheapest first per service")
    for column in ("instance type", "USD/h", "time", "USD", "speed", "why"):
        table.add_column(column, overflow="fold")
    for r in found:
        e = r.estimate
        table.add_row(r.instance_type, f"{r.usd_hour:.4g}", duration(e.hours) if e else "-",
                      money(e.usd) if e else (f"{r.usd_per_1k:.4f} / 1k predictions" if r.usd_per_1k else "-"),
                      e.kind if e else ("estimated" if r.usd_per_1k else "-"), r.reason)
    _print(table)


@app.command("refresh")
def refresh_cmd(root: RootOpt = None, config_dir: ConfigDirOpt = "configs") -> None:
    """Update the price catalog from the AWS Price List API and the EC2 spot price history (a user copy)."""
    from multitype.cloud.price_refresh import refresh

    proj = project("cost refresh", root, config_dir)
    result = refresh(proj.configs.project.aws)
    for line in result.skipped:  # one line each, unwrapped (a console would wrap at its width)
        typer.echo(f"warning: skipped {line}; those prices keep the catalog's figures", err=True)
    for c in result.changes:
        old = "-" if c.old is None else f"{c.old:g}"
        typer.echo(f"{c.instance} {c.field}: {old} -> {c.new:g}")
    typer.echo(f"{len(result.changes)} price(s) changed of {result.checked} instance types; catalog written to "
               f"{result.path}")


@budget_app.command("create")
def budget_create(
    amount: Annotated[float, typer.Option("--amount", help="Monthly limit in USD.")],
    email: Annotated[Optional[list[str]], typer.Option("--email", help="Alert e-mail address (repeatable).")] = None,
    sns_topic: Annotated[Optional[str], typer.Option("--sns-topic", help="Alert SNS topic ARN.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Budget name (default: multitype-<project name>-monthly).")] = None,
    root: RootOpt = None,
    config_dir: ConfigDirOpt = "configs",
) -> None:
    """Create an AWS Budgets monthly cost budget with alerts at 80% and 100% of actual spend."""
    from multitype.cloud.budgets import create_budget
    from multitype.errors import UserError

    if round(amount, 2) <= 0:  # before the project is opened or AWS is asked anything
        raise UserError(f"--amount must be above 0 USD, got {amount:g}")
    proj = project("cost budget create", root, config_dir)
    budget_name = name or f"multitype-{proj.configs.project.name}-monthly"
    result = create_budget(proj.configs.project.aws, amount, name=budget_name, emails=email, sns_topic=sns_topic)
    typer.echo(f"created budget {result.name} in account {result.account}: ${result.amount:.2f} per month")
    if result.subscribers:
        to = ", ".join(s["Address"] for s in result.subscribers)
        typer.echo(f"alerts at 80% and 100% of actual spend to {to}")
    else:
        typer.echo("warning: no --email or --sns-topic, so the budget has no alerts (AWS needs a subscriber for "
                   "each); add them to it in the Billing console", err=True)
