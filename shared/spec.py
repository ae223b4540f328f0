"""JobSpec: what a user asks tunefleet to tune, validated before anything is queued."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

T = TypeVar("T")

BUILTIN_DATASETS = ("breast_cancer", "digits", "wine", "iris")
MAX_TRIALS = 10_000
MAX_EPOCHS = 1_000

Metric = Literal["val_accuracy", "val_loss", "training_accuracy", "training_loss"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grid(_Strict, Generic[T]):
    """Every value is tried: ``{"grid": [a, b, c]}`` (Tune's grid_search)."""

    grid: list[T] = Field(min_length=1, max_length=1000)


class Choice(_Strict, Generic[T]):
    """One value drawn at random per trial: ``{"choice": [a, b, c]}`` (Tune's choice)."""

    choice: list[T] = Field(min_length=1, max_length=1000)


def _domain_kind(value: Any) -> str | None:
    if isinstance(value, Grid):
        return "grid"
    if isinstance(value, Choice):
        return "choice"
    if isinstance(value, dict):
        if "grid" in value:
            return "grid"
        if "choice" in value:
            return "choice"
        return None
    return "constant"


def _domain(value_type: Any) -> Any:
    """A parameter's type: a constant, a grid or a choice of ``value_type``.

    Built by a function (not a generic alias) so that the value's constraints reach
    the members of a grid or choice too.
    """
    return Annotated[
        Annotated[value_type, Tag("constant")]
        | Annotated[Grid[value_type], Tag("grid")]
        | Annotated[Choice[value_type], Tag("choice")],
        Discriminator(
            _domain_kind,
            custom_error_type="invalid_domain",
            custom_error_message='expected a value, {"grid": [...]} or {"choice": [...]}',
        ),
    ]


if TYPE_CHECKING:  # mypy cannot read types built at run time
    LearningRate: TypeAlias = Any
    BatchSize: TypeAlias = Any
    Dropout: TypeAlias = Any
    HiddenUnits: TypeAlias = Any
    WeightDecay: TypeAlias = Any
    Epochs: TypeAlias = Any
else:
    LearningRate = _domain(Annotated[float, Field(gt=0, le=10)])
    # BatchNorm cannot train on a batch of one row, hence at least 2.
    BatchSize = _domain(Annotated[int, Field(ge=2, le=65_536)])
    Dropout = _domain(Annotated[float, Field(ge=0, lt=1)])
    HiddenUnits = _domain(Annotated[int, Field(ge=1, le=8192)])
    WeightDecay = _domain(Annotated[float, Field(ge=0, le=10)])
    Epochs = _domain(Annotated[int, Field(ge=1, le=MAX_EPOCHS)])


class SearchSpace(_Strict):
    """The tuned parameters, each a constant, a grid or a choice. Defaults are constants."""

    lr: LearningRate = 1e-3
    batch_size: BatchSize = 64
    dropout: Dropout = 0.3
    hidden_units: HiddenUnits = 100
    weight_decay: WeightDecay = 0.0
    epochs: Epochs = 10

    def domains(self) -> dict[str, Any]:
        """Parameter name -> constant, Grid or Choice."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    def grid_size(self) -> int:
        """How many configurations the grid dimensions make together."""
        return math.prod(len(d.grid) for d in self.domains().values() if isinstance(d, Grid))


class DatasetSpec(_Strict):
    """Where the data comes from and how it is split, scaled and sampled."""

    builtin: Literal["breast_cancer", "digits", "wine", "iris"] | None = None
    upload: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16,64}$",
        description="A dataset id answered by POST /datasets.",
    )
    target: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description='Column holding the classes; default: the upload\'s, else "target".',
    )
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    stratify: bool = True
    scaler: Literal["minmax", "standard", "none"] = "minmax"
    balance: Literal["weighted_sampler", "none"] = "weighted_sampler"
    seed: int = Field(default=21, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_source_and_room_to_train(self) -> DatasetSpec:
        sources = [s for s in (self.builtin, self.upload) if s is not None]
        if len(sources) != 1:
            raise ValueError(
                'give exactly one dataset source: "builtin" (one of '
                f'{", ".join(BUILTIN_DATASETS)}) or "upload" (an id from POST /datasets)'
            )
        if self.validation_fraction + self.test_fraction > 0.9:
            raise ValueError(
                "validation_fraction + test_fraction must leave at least 10% of the rows "
                "to train on"
            )
        return self


class SearchSettings(_Strict):
    """How configurations are drawn from the search space."""

    num_samples: int = Field(
        default=1,
        ge=1,
        le=MAX_TRIALS,
        description="Trials per grid point; choices are drawn anew for each.",
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class Resources(_Strict):
    """What one trial reserves on the cluster; fractions are allowed."""

    cpu: float = Field(default=1.0, gt=0, le=512)
    gpu: float = Field(default=0.0, ge=0, le=64)


class JobSpec(_Strict):
    """A tuning job as a user submits it."""

    name: str | None = Field(default=None, max_length=200)
    dataset: DatasetSpec
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    search: SearchSettings = Field(default_factory=SearchSettings)
    metric: Metric = "val_accuracy"
    mode: Literal["max", "min"] | None = Field(
        default=None, description="Default: min for a loss, max for an accuracy."
    )
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _resolve_mode_and_size(self) -> JobSpec:
        if self.mode is None:
            self.mode = "min" if self.metric.endswith("loss") else "max"
        if self.trial_count() > MAX_TRIALS:
            raise ValueError(
                f"the search asks for {self.trial_count()} trials (grid points x "
                f"num_samples); at most {MAX_TRIALS} are allowed"
            )
        return self

    @property
    def resolved_mode(self) -> Literal["max", "min"]:
        """The mode after defaulting (never None once validated)."""
        return self.mode or "max"

    def trial_count(self) -> int:
        """How many trials the job will run."""
        return self.search_space.grid_size() * self.search.num_samples
