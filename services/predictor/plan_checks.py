"""What an imported checkpoint's preprocessing plan must look like, as pydantic models:
a plan shaped otherwise would fail at prediction time, so it is refused at import."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import InvalidInputError
from shared.preprocessing import DATE_PARTS, PLAN_FORMAT, input_columns, output_names

# A finite float: NaN or infinity in a plan would turn every prediction into NaN.
Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Part(_Strict):
    fill: Finite | None
    scale: Finite = 1.0
    offset: Finite = 0.0
    quantiles: list[Finite] | None = Field(default=None, max_length=10_000)
    normal: list[Finite] | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _paired(self) -> _Part:
        if (self.quantiles is None) != (self.normal is None) or (
            self.quantiles is not None and len(self.quantiles) != len(self.normal or [])
        ):
            raise ValueError("quantiles and normal must be lists of the same length")
        if self.quantiles is not None and self.quantiles != sorted(self.quantiles):
            raise ValueError("quantiles must be in increasing order")
        return self


class _Numeric(_Strict):
    name: Name
    role: Literal["numeric", "datetime"]
    indicator: bool
    parts: list[_Part]

    @model_validator(mode="after")
    def _parts_of_role(self) -> _Numeric:
        wanted = len(DATE_PARTS) if self.role == "datetime" else 1
        if len(self.parts) != wanted:
            raise ValueError(f"a {self.role} column has {wanted} parts, not {len(self.parts)}")
        return self


class _Categorical(_Strict):
    name: Name
    role: Literal["categorical"]
    encoding: Literal["one_hot", "embedding"] = "one_hot"
    categories: list[Annotated[str, Field(max_length=1000)]] = Field(max_length=100_000)


class _Plan(_Strict):
    format: Literal[1]
    scaler: str
    columns: list[Annotated[_Numeric | _Categorical, Field(discriminator="role")]]


def check_plan(plan: Any, feature_names: list[str], n_features: int) -> None:
    """InvalidInputError unless the plan is well formed, reads feature columns only, and
    makes as many inputs as the first layer takes."""
    try:
        _Plan.model_validate(plan)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidInputError(
            f"the checkpoint's preprocessing plan (format {PLAN_FORMAT}) is not one tunefleet "
            f"writes: {where}: {error['msg']}"
        ) from None
    unknown = [name for name in input_columns(plan) if name not in feature_names]
    if unknown:
        raise InvalidInputError(
            f"the preprocessing plan reads {unknown[0]!r}, which is not in feature_names"
        )
    made = len(output_names(plan))
    if made != n_features:
        raise InvalidInputError(
            f"the preprocessing plan makes {made} inputs, but the first layer takes {n_features}"
        )
