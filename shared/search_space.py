"""The search space: each tuned parameter as a constant or a domain to draw it from."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeAlias, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grid(_Strict, Generic[T]):
    """Every value is tried: ``{"grid": [a, b, c]}`` (Tune's grid_search)."""

    grid: list[T] = Field(min_length=1, max_length=1000)


class Choice(_Strict, Generic[T]):
    """One value drawn at random per trial: ``{"choice": [a, b, c]}`` (Tune's choice)."""

    choice: list[T] = Field(min_length=1, max_length=1000)


class Uniform(_Strict, Generic[T]):
    """A value drawn uniformly from ``[lo, hi)``: ``{"uniform": [lo, hi]}``."""

    uniform: tuple[T, T]

    @model_validator(mode="after")
    def _ordered(self) -> Uniform[T]:
        _check_order(*self.uniform)
        return self


# The most steps a quniform range may hold: (high - low) / q.
MAX_QUNIFORM_STEPS = 1e9


class QUniform(_Strict, Generic[T]):
    """Uniform, rounded to a multiple of ``q``: ``{"quniform": [lo, hi, q]}``."""

    quniform: tuple[T, T, Annotated[float, Field(gt=0, allow_inf_nan=False)]]

    @model_validator(mode="after")
    def _ordered_on_the_grid(self) -> QUniform[T]:
        lo, hi, q = self.quniform
        _check_order(lo, hi)
        # Rounding divides by q: a q of 1e-320 overflows it, and no search needs more steps.
        span = float(hi) - float(lo)  # type: ignore[arg-type]
        if span / q > MAX_QUNIFORM_STEPS:
            raise ValueError(
                f"quniform q {q:.12g} makes more than {MAX_QUNIFORM_STEPS:.0e} steps from "
                f"{lo} to {hi}; use a q of at least {span / MAX_QUNIFORM_STEPS:.3g}"
            )
        wrong = [
            f"quniform {name} {bound} is not a multiple of q {q:.12g}; "
            f"use {_multiples_around(bound, q)}"
            for name, bound in (("low", lo), ("high", hi))
            if not _is_multiple(float(bound), q)  # type: ignore[arg-type]
        ]
        if wrong:
            raise ValueError(". ".join(wrong))
        return self


class LogUniform(_Strict, Generic[T]):
    """A value drawn uniformly on a log scale: ``{"loguniform": [lo, hi]}``, lo > 0."""

    loguniform: tuple[T, T]

    @model_validator(mode="after")
    def _ordered_and_positive(self) -> LogUniform[T]:
        lo, hi = self.loguniform
        if float(lo) <= 0:  # type: ignore[arg-type]
            raise ValueError(f"loguniform bounds must be above 0, got lower bound {lo}")
        _check_order(lo, hi)
        return self


class RandInt(_Strict, Generic[T]):
    """An integer drawn from ``[lo, hi)`` (hi excluded, as in Tune): ``{"randint": [lo, hi]}``."""

    randint: tuple[T, T]

    @model_validator(mode="after")
    def _ordered(self) -> RandInt[T]:
        _check_order(*self.randint)
        return self


def _check_order(lo: Any, hi: Any) -> None:
    if not lo < hi:
        raise ValueError(f"the lower bound ({lo}) must be below the upper bound ({hi})")


def _is_multiple(value: float, q: float) -> bool:
    """Tune's own test (ray.tune.search.sample.Float.quantized), which refuses the
    bounds when the job runs: as strict, so that what passes here passes there, and as
    lenient, so that 0.3 with q 0.1 (0.3 / 0.1 = 2.9999999999999996) passes."""
    return math.isclose(value / q, round(value / q))


def _multiples_around(value: Any, q: float) -> str:
    below, above = math.floor(value / q) * q, math.ceil(value / q) * q
    return f"{below:.12g} or {above:.12g}"


SAMPLED = (Choice, Uniform, QUniform, LogUniform, RandInt)
_DOMAIN_KEYS: dict[str, Any] = {
    "grid": Grid,
    "choice": Choice,
    "uniform": Uniform,
    "quniform": QUniform,
    "loguniform": LogUniform,
    "randint": RandInt,
}


def _domain_kind(value: Any) -> str | None:
    for key, kind in _DOMAIN_KEYS.items():
        if isinstance(value, kind) or (isinstance(value, dict) and key in value):
            return key
    return None if isinstance(value, dict) else "constant"


def _domain(value_type: Any) -> Any:
    """A parameter's type: a constant, or one of the domains over ``value_type``.

    Built by a function (not a generic alias) so that the value's constraints reach
    every member of a grid or choice and both bounds of a range too.
    """
    members = [Annotated[value_type, Tag("constant")]] + [
        Annotated[kind[value_type], Tag(key)] for key, kind in _DOMAIN_KEYS.items()
    ]
    keys = ", ".join(f'{{"{key}": ...}}' for key in _DOMAIN_KEYS)
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built from a list at run time
        Discriminator(
            _domain_kind,
            custom_error_type="invalid_domain",
            custom_error_message=f"expected a value or one of {keys}",
        ),
    ]


if TYPE_CHECKING:  # mypy cannot read types built at run time
    LearningRate: TypeAlias = Any
    BatchSize: TypeAlias = Any
    Dropout: TypeAlias = Any
    HiddenUnits: TypeAlias = Any
    HiddenLayers: TypeAlias = Any
    WeightDecay: TypeAlias = Any
    Epochs: TypeAlias = Any
    ScalerDomain: TypeAlias = Any
    EmbeddingDim: TypeAlias = Any
else:
    LearningRate = _domain(Annotated[float, Field(gt=0, le=10)])
    # BatchNorm cannot train on a batch of one row, hence at least 2.
    BatchSize = _domain(Annotated[int, Field(ge=2, le=65_536)])
    Dropout = _domain(Annotated[float, Field(ge=0, lt=1)])
    HiddenUnits = _domain(Annotated[int, Field(ge=1, le=8192)])
    HiddenLayers = _domain(Annotated[int, Field(ge=1, le=16)])
    WeightDecay = _domain(Annotated[float, Field(ge=0, le=10)])
    # At most TUNEFLEET_MAX_EPOCHS (Settings), checked on submit.
    Epochs = _domain(Annotated[int, Field(ge=1)])
    ScalerDomain = _domain(Literal["minmax", "standard", "quantile", "none"])
    EmbeddingDim = _domain(Annotated[int, Field(ge=1, le=512)])


class SearchSpace(_Strict):
    """The tuned parameters, each a constant or a domain. Defaults are constants."""

    lr: LearningRate = 1e-3
    batch_size: BatchSize = 64
    dropout: Dropout = 0.3
    hidden_units: HiddenUnits = 100
    hidden_layers: HiddenLayers = Field(
        default=1, description="Hidden layers of hidden_units each; the seed's net has one."
    )
    weight_decay: WeightDecay = 0.0
    epochs: Epochs = 10
    scaler: ScalerDomain | None = Field(
        default=None,
        description="How numeric columns are scaled, tuned like any other parameter "
        '(a constant, {"grid": [...]} or {"choice": [...]}); unset, the '
        "dataset's scaler. Each value's preprocessing is fitted once per job.",
    )
    embedding_dim: EmbeddingDim | None = Field(
        default=None,
        description="The size of the learned vector of each category, in columns with more "
        "categories than one-hot encoding keeps (64); at most the column's categories + 2. "
        "Unset, 1.6 x categories^0.56, at most 32, per column.",
    )

    def domains(self) -> dict[str, Any]:
        """Parameter name -> constant or domain (a parameter left unset is not one)."""
        fields = type(self).model_fields
        return {name: value for name in fields if (value := getattr(self, name)) is not None}

    def scalers(self) -> list[str]:
        """The scalers the space tries, in order; empty when it leaves the dataset's."""
        scaler = self.scaler
        if scaler is None:
            return []
        if isinstance(scaler, Grid):
            return list(dict.fromkeys(scaler.grid))
        if isinstance(scaler, Choice):
            return list(dict.fromkeys(scaler.choice))
        if isinstance(scaler, str):
            return [scaler]
        raise ValueError('scaler takes a constant, {"grid": [...]} or {"choice": [...]}')

    def grid_size(self) -> int:
        """How many configurations the grid dimensions make together."""
        return math.prod(len(d.grid) for d in self.domains().values() if isinstance(d, Grid))

    def named(self, *kinds: type) -> list[str]:
        """The parameters whose domain is one of ``kinds``."""
        return [name for name, d in self.domains().items() if isinstance(d, kinds)]

    def admits(self, config: dict[str, Any]) -> bool:
        """Whether the space could have drawn ``config``: each parameter it sets is in
        ``config``, equal to its constant or inside its domain."""
        return all(
            name in config and _inside(domain, config[name])
            for name, domain in self.domains().items()
        )

    def most_epochs(self) -> int:
        """The most epochs any trial can run."""
        epochs = self.epochs
        if isinstance(epochs, Grid):
            return int(max(epochs.grid))
        if isinstance(epochs, Choice):
            return int(max(epochs.choice))
        if isinstance(epochs, RandInt):
            return int(epochs.randint[1]) - 1
        if isinstance(epochs, Uniform | LogUniform):
            return int(max(epochs.uniform if isinstance(epochs, Uniform) else epochs.loguniform))
        if isinstance(epochs, QUniform):
            return int(epochs.quniform[1])
        return int(epochs)


def _inside(domain: Any, value: Any) -> bool:
    """Whether ``value`` is a constant's own value or lies in a domain (its bounds
    included: a drawn float may round onto the upper one)."""
    if isinstance(domain, Grid):
        return value in domain.grid
    if isinstance(domain, Choice):
        return value in domain.choice
    if isinstance(value, bool) or not isinstance(value, int | float):
        return not isinstance(domain, SAMPLED) and value == domain
    if isinstance(domain, Uniform | LogUniform):
        low, high = domain.uniform if isinstance(domain, Uniform) else domain.loguniform
        return bool(low <= value <= high)
    if isinstance(domain, QUniform):
        low, high, q = domain.quniform
        return bool(low <= value <= high) and _is_multiple(float(value), q)
    if isinstance(domain, RandInt):
        low, high = domain.randint
        return float(value).is_integer() and bool(low <= value < high)
    return bool(value == domain)
