"""The price and hardware catalog: what an instance type costs per hour and what it can compute.

The catalog is a versioned data file in the package (``cloud/data/prices.json``:
``version``, ``date``, ``sources``), with us-east-1 public list prices of the
runbook's SageMaker types, the EC2 types the docs name and the CPU types the
launchers default to; every price names its source. GPU peak TFLOPS come from
NVIDIA's datasheets (named per GPU), CPU peaks are computed from the core count,
the sustained clock and the FLOPs per cycle of the vector units.

``multitype cost refresh`` writes a user copy (:func:`user_catalog_path`,
``$XDG_CACHE_HOME/multitype/prices.json``, never the package file); the loader
takes whichever of the two is newer (``date``, then ``version``).

A spot price is either a figure from a source (the runbook, AWS's spot price
history after a refresh) or None; :meth:`PriceCatalog.quote` falls back to
on-demand x the runbook's spot ratio and says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from multitype.cloud.catalog import nearest_hint
from multitype.errors import AwsError

PACKAGE_FILE = "data/prices.json"
ENV_FILE = "MULTITYPE_PRICES"


@dataclass(frozen=True)
class InstanceSpec:
    """One instance type: hardware, hourly prices and peak compute.

    Attributes
    ----------
    name : str
        ``g5.xlarge`` (EC2) or ``ml.g5.xlarge`` (SageMaker).
    vcpu, memory_gib : int, float
        vCPUs and memory.
    gpus : int
        GPUs per instance (0 for CPU types).
    gpu_model, gpu_memory_gib : str or None, float or None
        NVIDIA model (``A10G``) and memory per GPU.
    on_demand_usd_hour : float
        Public on-demand price per hour.
    spot_usd_hour : float or None
        Spot price per hour from a source; None when unknown.
    peak_tflops : float
        Peak dense TFLOPS of the whole instance at the precision training uses:
        16-bit tensor cores x GPUs, or fp32 of all CPU cores.
    peak_fp32_tflops : float
        The same in fp32 (GPU CUDA cores; equal to ``peak_tflops`` on CPU types).
    peak_source : str
        Where the peak comes from (a datasheet, or the CPU arithmetic).
    bf16 : bool
        The GPU has bf16 tensor cores (else 16-bit training is fp16).
    price_source, spot_source : str
        The source of each price.
    """

    name: str
    vcpu: int
    memory_gib: float
    gpus: int
    gpu_model: str | None
    gpu_memory_gib: float | None
    on_demand_usd_hour: float
    spot_usd_hour: float | None
    peak_tflops: float
    peak_fp32_tflops: float
    peak_source: str
    bf16: bool = False
    price_source: str = ""
    spot_source: str = ""

    @property
    def service(self) -> str:
        """``sagemaker`` for ``ml.*`` names, else ``ec2``."""
        return "sagemaker" if self.name.startswith("ml.") else "ec2"


@dataclass(frozen=True)
class Quote:
    """An hourly price and how it was found (``"runbook"``, ``"estimate: on-demand x 0.30 ..."``)."""

    usd_hour: float
    basis: str
    estimated: bool


class PriceCatalog:
    """The loaded catalog (see the module docstring); read-only.

    Attributes
    ----------
    date, version, source : str, int, str
        Of the data file in use.
    path : str
        The file it came from.
    """

    def __init__(self, data: dict[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self.date = str(data["date"])
        self.version = int(data["version"])
        self.region = str(data.get("region", "us-east-1"))
        self.source = str(data.get("source") or f"{path} ({self.date})")
        self.sources: dict[str, str] = dict(data.get("sources", {}))
        self.spot_ratio = float(data.get("spot_ratio", 0.30))
        self.utilisation = float(data.get("utilisation", {}).get("value", 0.35))
        self.utilisation_source = str(data.get("utilisation", {}).get("source", ""))
        startup = dict(data.get("startup_minutes", {}))
        self.startup_minutes = {k: float(startup.get(k, 0.0)) for k in ("sagemaker", "ec2")}
        self.startup_source = str(startup.get("source", ""))
        self.gpus: dict[str, dict[str, Any]] = dict(data.get("gpus", {}))
        self._instances = {name: self._spec(name, entry) for name, entry in data["instances"].items()}

    def _spec(self, name: str, e: dict[str, Any]) -> InstanceSpec:
        gpus = int(e.get("gpus", 0) or 0)
        model = e.get("gpu_model")
        if gpus:
            gpu = self.gpus[model]
            peak, peak32 = gpu["tensor_tflops"] * gpus, gpu["fp32_tflops"] * gpus
            source, bf16 = gpu["source"], bool(gpu.get("bf16"))
        else:
            cpu = self.data["cpus"][e["cpu"]]
            cores = int(e["vcpu"]) // 2  # two hardware threads per core on these families
            peak = peak32 = cores * cpu["fp32_flops_per_cycle_per_core"] * float(e["ghz"]) / 1000.0
            source = f"{cores} cores x {cpu['fp32_flops_per_cycle_per_core']} FLOPs/cycle x {e['ghz']} GHz; " \
                     f"{cpu['source']}"
            bf16 = False
        return InstanceSpec(
            name=name, vcpu=int(e["vcpu"]), memory_gib=float(e["memory_gib"]), gpus=gpus, gpu_model=model,
            gpu_memory_gib=e.get("gpu_memory_gib"), on_demand_usd_hour=float(e["on_demand"]),
            spot_usd_hour=None if e.get("spot") is None else float(e["spot"]), peak_tflops=float(peak),
            peak_fp32_tflops=float(peak32), peak_source=source, bf16=bf16,
            price_source=str(e.get("price_source", "")), spot_source=str(e.get("spot_source", "")))

    def instance(self, name: str) -> InstanceSpec | None:
        """The spec of ``name`` (``g5.xlarge`` or ``ml.g5.xlarge``), or None when the catalog lacks it."""
        return self._instances.get(name)

    def names(self, service: str | None = None) -> list[str]:
        """Instance type names: ``service="sagemaker"`` (``ml.*``), ``"ec2"``, or None for all."""
        return [n for n, s in self._instances.items() if service is None or s.service == service]

    def startup_hours(self, name: str) -> float:
        """Billed hours per job outside training on ``name``'s service (the catalog's stated assumption)."""
        return self.startup_minutes["sagemaker" if name.startswith("ml.") else "ec2"] / 60.0

    def price(self, name: str, spot: bool) -> float | None:
        """The hourly price from a source: on-demand, or spot (None when no source gives one or unknown type)."""
        spec = self.instance(name)
        if spec is None:
            return None
        return spec.spot_usd_hour if spot else spec.on_demand_usd_hour

    def quote(self, name: str, spot: bool) -> Quote:
        """The hourly price to plan with: :meth:`price`, else on-demand x the runbook's spot ratio (marked).

        Raises
        ------
        AwsError
            ``name`` is not in the catalog (names the nearest).
        """
        spec = self.require(name)
        if not spot:
            return Quote(spec.on_demand_usd_hour, f"on-demand ({spec.price_source})", False)
        if spec.spot_usd_hour is not None:
            return Quote(spec.spot_usd_hour, f"spot ({spec.spot_source or spec.price_source})", False)
        return Quote(round(spec.on_demand_usd_hour * self.spot_ratio, 4),
                     f"spot estimate: on-demand x {self.spot_ratio:.2f} (runbook's spot ratio)", True)

    def require(self, name: str) -> InstanceSpec:
        """:meth:`instance`, or an :class:`AwsError` naming the nearest known types."""
        spec = self.instance(name)
        if spec is not None:
            return spec
        hint = nearest_hint(name, list(self._instances), f"known: {', '.join(self._instances)}", cutoff=0.5)
        raise AwsError(f"instance type {name!r} is not in the price catalog ({self.date}); {hint} "
                       "(or run 'multitype cost refresh')")


def package_catalog_path() -> Path:
    """The data file shipped in the package."""
    return Path(str(resources.files("multitype.cloud").joinpath(PACKAGE_FILE)))


def user_catalog_path() -> Path:
    """Where ``cost refresh`` writes: ``$MULTITYPE_PRICES``, else ``$XDG_CACHE_HOME/multitype/prices.json``."""
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "multitype" / "prices.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("version", "date", "instances"):
            if key not in data:
                raise ValueError(f"no {key!r}")
        return data
    except (OSError, ValueError) as exc:
        raise AwsError(f"the price catalog {path} cannot be read ({exc}); delete it to use the packaged one, "
                       "or run 'multitype cost refresh'") from None


def load_catalog() -> PriceCatalog:
    """The newer of the packaged catalog and the user copy (by ``date``, then ``version``).

    Raises
    ------
    AwsError
        The user copy exists but cannot be read (names it).
    """
    package = package_catalog_path()
    data, path = _read(package), package
    user = user_catalog_path()
    if user.is_file():
        mine = _read(user)
        if (str(mine["date"]), int(mine["version"])) >= (str(data["date"]), int(data["version"])):
            data, path = mine, user
    return PriceCatalog(data, str(path))
