"""Request bodies of the HTTP API (pydantic). Their generation fields derive from ``GenerationParams``:
names, types, defaults, bounds and help come from its declarations (task-API names from ``Spec.task``);
a server's own, narrower limits are checked on top (``routes.common.check_limits``).

Every model forbids unknown fields and non-finite numbers, and coerces nothing: a generation field's raw
JSON value goes to ``GenerationParams``' own check (``true`` is not a step count, ``"4"`` is not a number),
and the other fields are pydantic-strict (``"no"`` is not a boolean). A typo, a NaN or a wrong type is a
422 naming the field, never a 5xx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from sampleforge.params import SPECS, GenerationParams, Spec, check_seeds


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True, strict=True)


BLANK = "must hold at least one keyword (it is empty or only whitespace)"


def not_blank(text: str) -> str:
    """The check of a required prompt (after StrictRequest strips whitespace): empty is a 422 naming the field."""
    if not text:
        raise PydanticCustomError("string_too_short", BLANK)
    return text


RequiredText = Annotated[str, AfterValidator(not_blank)]


def blank_errors(texts: dict[str, str]) -> list[dict[str, Any]]:
    """The 422 error items ``not_blank`` gives, for the fields in ``texts`` (field -> value) that are empty or only
    whitespace: for a prompt that a route needs only in some cases (a morph's, when its ends are not clips)."""
    return [{"loc": ("body", field), "msg": BLANK, "type": "string_too_short"}
            for field, text in texts.items() if not text.strip()]


class _Derived(StrictRequest):
    """A model whose generation fields are made at import time from the ``GenerationParams`` declarations."""

    if TYPE_CHECKING:  # the derived fields are invisible to a type checker: they read as Any

        def __getattr__(self, name: str) -> Any: ...


def derived_field(spec: Spec, required: bool = False) -> tuple[Any, Any]:
    """One pydantic field (annotation, FieldInfo) for ``spec``: same type, bounds, default and help."""
    choices = spec.choices if isinstance(spec.choices, tuple) else None
    kind: Any = Literal.__getitem__(choices) if choices else spec.kind
    if spec.optional and not required:
        kind = kind | None
    needed = required and spec.kind is str  # a required text: not empty, nor only whitespace
    info = Field(
        ... if required else spec.default,
        ge=spec.ge, gt=spec.gt, le=spec.le, description=spec.help, max_length=spec.max_length,
        json_schema_extra={"minLength": 1} if needed else None,
    )
    if spec.name == "length":  # 'auto' or seconds: JSON gives the seconds as a number
        kind = str | float | None
    annotation: Any = Annotated[kind, BeforeValidator(spec.check)]  # the raw value: no coercion first
    return (Annotated[annotation, AfterValidator(not_blank)] if needed else annotation), info


def _fields(names: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """HTTP field name -> (annotation, FieldInfo) for each setting in ``names`` (setting -> HTTP name)."""
    return {http: derived_field(SPECS[name], name in required) for name, http in names.items()}


HTTP_SETTINGS = [name for name, spec in SPECS.items() if spec.http]
# the task API's name of each setting it takes (its prompt sits beside the params)
TASK_FIELDS = {name: SPECS[name].task or name for name in HTTP_SETTINGS if name != "prompt"}


def _seed_with_room(seed: int | None, info: ValidationInfo) -> int | None:
    """A seed must leave room for its clips (clip k uses seed + k): said of ``seed``, as 422, not later as 500."""
    check_seeds(seed, info.data.get("count") or 1)
    return seed


class _GenerateBase(_Derived):
    _seed_room = field_validator("seed", check_fields=False)(_seed_with_room)

    def to_params(self) -> GenerationParams:
        return GenerationParams.from_kwargs(self.model_dump())


class _TaskParamsBase(_Derived):
    _seed_room = field_validator("seed", check_fields=False)(_seed_with_room)

    def settings(self) -> dict[str, Any]:
        """Setting name -> value."""
        return {name: getattr(self, task) for name, task in TASK_FIELDS.items()}


if TYPE_CHECKING:
    GenerateRequest = _GenerateBase
    TaskParams = _TaskParamsBase
else:
    GenerateRequest = create_model(
        "GenerateRequest", __base__=_GenerateBase,
        __doc__="``POST /v1/generate``: one prompt, ``count`` clips (seeds seed, seed+1, ...).",
        **_fields({name: name for name in HTTP_SETTINGS}, required=("prompt",)),
    )
    TaskParams = create_model("TaskParams", __base__=_TaskParamsBase,
                              __doc__="The ``params`` of a task (AudioLDM-service style names).",
                              **_fields(TASK_FIELDS))


class TaskData(StrictRequest):
    operation: Literal["generate"]
    prompt: RequiredText = derived_field(SPECS["prompt"], required=True)[1]
    params: TaskParams = Field(default_factory=lambda: TaskParams.model_validate({}))


class TaskRequest(StrictRequest):
    """``POST /v1/tasks``: ``{"type": "audio-generation", "data": {"operation": "generate", ...}}``."""

    type: Literal["audio-generation"]
    data: TaskData
    id: str | None = Field(None, max_length=200, description="the client's own task id, echoed back")
    modelType: str | None = Field(None, max_length=100, description="accepted and ignored")
    storeResults: bool = True

    def to_generate(self) -> GenerateRequest:
        return GenerateRequest.model_validate({"prompt": self.data.prompt, **self.data.params.settings()})
