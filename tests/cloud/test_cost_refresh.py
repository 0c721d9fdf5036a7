"""``multitype cost refresh``: the AWS Price List API and the EC2 spot price history into the user catalog.

moto has no ``pricing`` service, so the Price List API is answered by
botocore's :class:`~botocore.stub.Stubber` on the very client refresh uses:
each ``GetProducts`` request is checked whole (service code, filters, format)
and answered with products in the Price List's own JSON shape (product
attributes, OnDemand and Reserved terms, price dimensions). moto does answer
``DescribeSpotPriceHistory`` (a flat 0.00001 per zone); the request we send is
captured at our client layer and checked.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from multitype.cloud import aws, price_refresh, prices
from multitype.config import AwsConfig
from tests.cloud.launch_helpers import project_yaml
from tests.conftest import write_configs

LOCATION = "US East (N. Virginia)"
# what the Price List says today for a few catalog types (the rest: the catalog's own figure)
NEW = {"p4d.24xlarge": "21.9576000000", "ml.g5.xlarge": "1.4080000000"}
MISSING = "ml.p3.8xlarge"  # no product in the answer: the catalog's figure stays, unreported


def _product(name: str, usd: str) -> str:
    """One ``PriceList`` entry as the API returns it: a JSON string (product, serviceCode, terms)."""
    sku = "JRTCKXETXF" + name.replace(".", "")[:6].upper()
    if name.startswith("ml."):
        attributes = {"servicecode": "AmazonSageMaker", "location": LOCATION, "locationType": "AWS Region",
                      "instanceName": name, "component": "Training", "usagetype": f"USE1-Train:{name}",
                      "operation": "RunInstance", "regionCode": "us-east-1", "servicename": "Amazon SageMaker"}
        service, family = "AmazonSageMaker", "ML Instance"
    else:
        attributes = {"servicecode": "AmazonEC2", "location": LOCATION, "locationType": "AWS Region",
                      "instanceType": name, "tenancy": "Shared", "operatingSystem": "Linux",
                      "preInstalledSw": "NA", "capacitystatus": "Used", "licenseModel": "No License required",
                      "usagetype": f"BoxUsage:{name}", "operation": "RunInstances", "regionCode": "us-east-1",
                      "servicename": "Amazon Elastic Compute Cloud"}
        service, family = "AmazonEC2", "Compute Instance"
    dimension = {"unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                 "description": f"${float(usd):.3f} per On Demand {name} Instance Hour",
                 "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "pricePerUnit": {"USD": usd}}
    reserved = {"unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [], "description": "reserved",
                "rateCode": f"{sku}.4NA7Y494T4.6YS6EN2CT7", "pricePerUnit": {"USD": "0.0010000000"}}
    return json.dumps({
        "product": {"productFamily": family, "attributes": attributes, "sku": sku},
        "serviceCode": service,
        "terms": {
            "OnDemand": {f"{sku}.JRTCKXETXF": {"priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": dimension},
                                               "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z",
                                               "offerTermCode": "JRTCKXETXF", "termAttributes": {}}},
            "Reserved": {f"{sku}.4NA7Y494T4": {"priceDimensions": {f"{sku}.4NA7Y494T4.6YS6EN2CT7": reserved},
                                               "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z",
                                               "offerTermCode": "4NA7Y494T4",
                                               "termAttributes": {"LeaseContractLength": "1yr",
                                                                  "PurchaseOption": "No Upfront"}}}},
        "version": "20261120181733", "publicationDate": "2026-11-20T18:17:33Z"})


def _filters(name: str) -> list[dict[str, str]]:
    def term(field: str, value: str) -> dict[str, str]:
        return {"Type": "TERM_MATCH", "Field": field, "Value": value}

    if name.startswith("ml."):
        return [term("instanceName", name), term("location", LOCATION), term("component", "Training")]
    return [term("instanceType", name), term("location", LOCATION), term("tenancy", "Shared"),
            term("operatingSystem", "Linux"), term("preInstalledSw", "NA"), term("capacitystatus", "Used")]


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.configs = write_configs(tmp_path / "configs", project=project_yaml(None))
        self.user = tmp_path / "cache" / "prices.json"
        self.catalog = prices.load_catalog()
        self.spot_sent: list[dict[str, Any]] = []

    def args(self) -> list[str]:
        return ["cost", "refresh", "--root", str(self.root), "--config-dir", str(self.configs)]

    def stub_prices(self, error: str | None = None):
        """A Stubber on the Price List client refresh uses: every request checked, realistic answers."""
        from botocore.stub import Stubber

        stub = Stubber(aws.client("pricing", AwsConfig(region="us-east-1")))
        if error:
            stub.add_client_error("get_products", service_error_code=error, http_status_code=400,
                                  service_message="User: arn:aws:iam::123456789012:user/dev is not authorized to "
                                                  "perform: pricing:GetProducts")
            return stub
        for name in self.catalog.names():
            spec = self.catalog.require(name)
            found = [] if name == MISSING else [_product(name, NEW.get(name, f"{spec.on_demand_usd_hour:.10f}"))]
            stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": found},
                              expected_params={"ServiceCode": "AmazonSageMaker" if name.startswith("ml.")
                                               else "AmazonEC2", "Filters": _filters(name),
                                               "FormatVersion": "aws_v1", "MaxResults": 100})
        return stub


@pytest.fixture
def env(aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MULTITYPE_PRICES", str(tmp_path / "cache" / "prices.json"))
    e = Env(tmp_path)
    ec2 = aws.client("ec2", AwsConfig())

    def capture(params: dict[str, Any], **_: Any) -> None:
        e.spot_sent.append(dict(params))

    ec2.meta.events.register("provide-client-params.ec2.DescribeSpotPriceHistory", capture, unique_id="t-spot")
    yield e
    ec2.meta.events.unregister("provide-client-params.ec2.DescribeSpotPriceHistory", unique_id="t-spot")


def test_refresh_writes_the_user_copy_and_says_what_changed(env: Env, cli) -> None:
    package = prices.package_catalog_path().read_bytes()
    with env.stub_prices() as stub:
        result = cli(*env.args())
        stub.assert_no_pending_responses()  # one GetProducts per catalog type, each as expected
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert "p4d.24xlarge on_demand: 32.7726 -> 21.9576" in out
    assert "ml.g5.xlarge on_demand: 1.01 -> 1.408" in out
    assert not [line for line in out if line.startswith(f"{MISSING} ")]
    # spot: every EC2 type of the catalog, Linux, the prices in effect now
    [sent] = env.spot_sent
    assert sent["InstanceTypes"] == env.catalog.names("ec2")
    assert sent["ProductDescriptions"] == ["Linux/UNIX"]
    assert abs((dt.datetime.now(dt.timezone.utc) - sent["StartTime"]).total_seconds()) < 60
    assert "g5.xlarge spot: - -> 1e-05" in out  # moto's flat spot price
    changed = len([line for line in out if "->" in line])
    assert out[-1] == (f"{changed} price(s) changed of {len(env.catalog.names())} instance types; catalog written "
                       f"to {env.user}")

    # the user copy is what the next command loads; the packaged file is untouched
    assert prices.package_catalog_path().read_bytes() == package
    data = json.loads(env.user.read_text())
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    assert data["date"] == today and data["region"] == "us-east-1"
    loaded = prices.load_catalog()
    assert loaded.path == str(env.user) and loaded.date == today
    assert loaded.price("p4d.24xlarge", spot=False) == 21.9576
    assert loaded.price("ml.g5.xlarge", spot=False) == 1.408
    assert loaded.price(MISSING, spot=False) == 12.24
    assert loaded.price("g5.xlarge", spot=True) == 1e-05 and loaded.price("ml.g5.xlarge", spot=True) == 0.30
    assert loaded.require("p4d.24xlarge").price_source == f"aws-price-list-api {today}"
    assert loaded.require("g5.xlarge").spot_source == f"describe_spot_price_history {today}"

    # a second refresh with the same answers changes nothing
    env.spot_sent.clear()
    with env.stub_prices():
        again = cli(*env.args())
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("0 price(s) changed of ")


def test_no_credentials_is_one_line_and_the_catalog_untouched(env: Env, cli,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env.user.parent.mkdir(parents=True)
    env.user.write_bytes(prices.package_catalog_path().read_bytes())
    before = env.user.read_bytes()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(env.root / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(env.root / "none"))
    result = cli(*env.args())
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: no AWS credentials found; tried: env, ")
    assert env.user.read_bytes() == before and env.spot_sent == []


def test_pricing_denied_updates_spot_and_warns(env: Env, cli) -> None:
    with env.stub_prices(error="AccessDeniedException") as stub:
        result = cli(*env.args())
        stub.assert_no_pending_responses()
    assert result.exit_code == 0, result.stderr
    [warning] = result.stderr.strip().splitlines()
    assert warning.startswith("warning: skipped on-demand prices: cannot read the AWS Price List API "
                              "(pricing:GetProducts): access denied (User: arn:aws:iam::123456789012:user/dev is "
                              "not authorized to perform: pricing:GetProducts)")
    assert warning.endswith("those prices keep the catalog's figures")
    assert "g5.xlarge spot: - -> 1e-05" in result.stdout and "on_demand" not in result.stdout
    loaded = prices.load_catalog()
    assert loaded.path == str(env.user)
    assert loaded.price("g5.xlarge", spot=True) == 1e-05
    assert loaded.price("p4d.24xlarge", spot=False) == 32.7726  # kept


def test_both_denied_is_one_line_and_writes_nothing(env: Env, cli) -> None:
    from botocore.exceptions import ClientError

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized to perform "
                                     "this operation."}}, "DescribeSpotPriceHistory")

    ec2 = aws.client("ec2", AwsConfig())
    ec2.meta.events.register("before-call.ec2.DescribeSpotPriceHistory", refuse, unique_id="t-refuse")
    try:
        with env.stub_prices(error="AccessDeniedException"):
            result = cli(*env.args())
    finally:
        ec2.meta.events.unregister("before-call.ec2.DescribeSpotPriceHistory", unique_id="t-refuse")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot refresh the price catalog: on-demand prices: cannot read the AWS Price "
                           "List API (pricing:GetProducts): access denied")
    assert "spot prices: cannot read the EC2 spot price history (ec2:DescribeSpotPriceHistory): access denied" in line
    assert not env.user.exists()


def test_region_typo_names_the_nearest(env: Env, cli) -> None:
    write_configs(env.configs, project=project_yaml(None, region="us-eats-1"))
    result = cli(*env.args())
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown AWS region 'us-eats-1' (aws.region in project.yaml); did you "
                                    "mean us-east-1")
    assert len(result.stderr.strip().splitlines()) == 1 and not env.user.exists() and env.spot_sent == []


def test_newest_spot_takes_each_zones_newest_then_the_lowest_zone() -> None:
    t0 = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)
    history = [  # the shape DescribeSpotPriceHistory returns
        {"AvailabilityZone": "us-east-1a", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.452100", "Timestamp": t0},
        {"AvailabilityZone": "us-east-1a", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.301900", "Timestamp": t0 - dt.timedelta(hours=3)},  # older: ignored
        {"AvailabilityZone": "us-east-1b", "InstanceType": "g5.xlarge", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.398700", "Timestamp": t0 - dt.timedelta(minutes=5)},
        {"AvailabilityZone": "us-east-1c", "InstanceType": "t3.medium", "ProductDescription": "Linux/UNIX",
         "SpotPrice": "0.012400", "Timestamp": t0},
    ]
    assert price_refresh.newest_spot(history) == {"g5.xlarge": 0.3987, "t3.medium": 0.0124}


def test_on_demand_reads_only_hourly_on_demand_terms() -> None:
    assert price_refresh.on_demand_usd([_product("g5.xlarge", "1.0060000000")]) == 1.006
    assert price_refresh.on_demand_usd([]) is None
