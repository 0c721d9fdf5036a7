"""``multitype cost refresh``: today's prices from AWS into a user copy of the catalog.

- on-demand: the AWS Price List API (``pricing`` client; its endpoint is in
  us-east-1) ``get_products`` per instance type, filtered to the region's
  location name (from botocore's endpoint data), Linux, shared tenancy, no
  pre-installed software and ``capacitystatus=Used`` for EC2, and to the
  ``Training`` component for SageMaker;
- spot: EC2 ``describe_spot_price_history`` in the region for the EC2 types
  (Linux/UNIX, from now on: the newest price of each availability zone, the
  lowest zone taken). SageMaker managed spot has no price API: those stay.

Each part runs where the credentials allow; a refused part is reported and
skipped. The result goes to :func:`~multitype.cloud.prices.user_catalog_path`
(never the package file), dated today, and every changed price is listed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multitype.cloud import aws as cloud_aws
from multitype.cloud.catalog import nearest_hint
from multitype.cloud.prices import PriceCatalog, load_catalog, user_catalog_path
from multitype.config import AwsConfig
from multitype.errors import AwsError

PRICING_REGION = "us-east-1"  # the Price List API answers in us-east-1 (and ap-south-1, eu-central-1)


@dataclass
class Change:
    """One price that moved: ``instance``, ``field`` (``on_demand`` or ``spot``), old -> new."""

    instance: str
    field: str
    old: float | None
    new: float


@dataclass
class RefreshResult:
    """What :func:`refresh` did."""

    path: Path
    changes: list[Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    checked: int = 0


def location_name(region: str) -> str:
    """The Price List API's ``location`` of a region (``us-east-1`` -> ``US East (N. Virginia)``).

    Raises
    ------
    AwsError
        botocore does not know the region.
    """
    
    import botocore.session

    regions: dict[str, str] = {}
    for partition in botocore.session.get_session().get_data("endpoints")["partitions"]:
        regions.update({name: str(r["description"]) for name, r in partition.get("regions", {}).items()})
    if region in regions:
        return regions[region]
    raise AwsError(f"unknown AWS region {region!r} (aws.region in project.yaml); "
                   + nearest_hint(region, list(regions), "e.g. us-east-1"))


def product_filters(instance_type: str, location: str) -> tuple[str, list[dict[str, str]]]:
    """(ServiceCode, Filters) of ``get_products`` for one instance type."""
    def term(name: str, value: str) -> dict[str, str]:
        return {"Type": "TERM_MATCH", "Field": name, "Value": value}

    if instance_type.startswith("ml."):
        return "AmazonSageMaker", [term("instanceName", instance_type), term("location", location),
                                   term("component", "Training")]
    return "AmazonEC2", [term("instanceType", instance_type), term("location", location),
                         term("tenancy", "Shared"), term("operatingSystem", "Linux"),
                         term("preInstalledSw", "NA"), term("capacitystatus", "Used")]


def on_demand_usd(price_list: list[str]) -> float | None:
    """The hourly on-demand USD price in ``get_products``' ``PriceList`` (JSON strings), or None."""
    prices = []
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for offer in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in offer.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd is not None and str(dim.get("unit", "Hrs")).lower().startswith("hr") and float(usd) > 0:
                    prices.append(float(usd))
    return min(prices) if prices else None


def newest_spot(history: list[dict[str, Any]]) -> dict[str, float]:
    """Instance type -> the lowest of each zone's newest spot price."""
    newest: dict[tuple[str, str], tuple[Any, float]] = {}
    for item in history:
        key = (item["InstanceType"], item.get("AvailabilityZone", ""))
        stamp = item.get("Timestamp")
        if key not in newest or stamp > newest[key][0]:
            newest[key] = (stamp, float(item["SpotPrice"]))
    out: dict[str, float] = {}
    for (itype, _), (_, price) in newest.items():
        out[itype] = min(price, out.get(itype, price))
    return out


def _on_demand(aws: AwsConfig, names: list[str], location: str) -> dict[str, float]:
    client = cloud_aws.client("pricing", aws.model_copy(update={"region": PRICING_REGION}))
    found: dict[str, float] = {}
    with cloud_aws.aws_errors("read the AWS Price List API (pricing:GetProducts)", aws):
        for name in names:
            service, filters = product_filters(name, location)
            out = client.get_products(ServiceCode=service, Filters=filters, FormatVersion="aws_v1", MaxResults=100)
            usd = on_demand_usd(out.get("PriceList", []))
            if usd is not None:
                found[name] = usd
    return found


def _spot(aws: AwsConfig, names: list[str], now: dt.datetime) -> dict[str, float]:
    client = cloud_aws.client("ec2", aws)
    history: list[dict[str, Any]] = []
    with cloud_aws.aws_errors("read the EC2 spot price history (ec2:DescribeSpotPriceHistory)", aws):
        pages = client.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=names, ProductDescriptions=["Linux/UNIX"], StartTime=now,
            PaginationConfig={"MaxItems": 5000})
        for page in pages:
            history.extend(page.get("SpotPriceHistory", []))
    return {k: v for k, v in newest_spot(history).items() if k in names}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".prices-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def refresh(aws: AwsConfig, catalog: PriceCatalog | None = None, now: dt.datetime | None = None) -> RefreshResult:
    """Fetch today's prices for every catalog type and write the user copy (see the module docstring).

    Raises
    ------
    AwsError
        No credentials, a bad region, or neither source answered (the reasons are named).
    """
    cloud_aws.check_credentials(aws)
    catalog = catalog or load_catalog()
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.strftime("%Y-%m-%d")
    location = location_name(aws.region)
    names = catalog.names()
    result = RefreshResult(user_catalog_path(), checked=len(names))
    on_demand: dict[str, float] = {}
    spot: dict[str, float] = {}
    try:
        on_demand = _on_demand(aws, names, location)
    except AwsError as exc:
        result.skipped.append(f"on-demand prices: {exc}")
    try:
        spot = _spot(aws, catalog.names("ec2"), now)
    except AwsError as exc:
        result.skipped.append(f"spot prices: {exc}")
    if len(result.skipped) == 2:
        raise AwsError("cannot refresh the price catalog: " + "; ".join(result.skipped))
    data = copy.deepcopy(catalog.data)
    for name, entry in data["instances"].items():
        if name in on_demand:
            if entry.get("on_demand") != on_demand[name]:
                result.changes.append(Change(name, "on_demand", entry.get("on_demand"), on_demand[name]))
            entry["on_demand"], entry["price_source"] = on_demand[name], f"aws-price-list-api {today}"
        if name in spot:
            if entry.get("spot") != spot[name]:
                result.changes.append(Change(name, "spot", entry.get("spot"), spot[name]))
            entry["spot"], entry["spot_source"] = spot[name], f"describe_spot_price_history {today}"
    data["date"] = today
    data["region"] = aws.region
    data["source"] = (f"refreshed {today} from the AWS Price List API and the EC2 spot price history "
                      f"({aws.region}); base: {catalog.source}")
    data.setdefault("sources", {})["aws-price-list-api"] = f"pricing:GetProducts, {location}, read {today}"
    _write(result.path, data)
    return result
