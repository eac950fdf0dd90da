"""Per-college field mappings: which Zoho modules and fields feed which canonical columns.

Colleges name their Zoho CRM modules and fields differently (``Students`` vs ``Learners``,
``Student_Number`` vs ``Learner_ID``). One YAML file per college says, for every canonical
entity, which Zoho module holds it and which source field (through which transform) fills each
canonical column. It also holds the identity-matching settings and the BTEC grading
configuration, so everything that differs between colleges lives in one reviewed file.
``integration_pipelines/mappings/default.yaml`` matches the sandbox and documents the shape.

The file is validated by pydantic when it is loaded. A bad file stops the load with a
:class:`MappingError` whose message names the file, the line and the field, e.g.::

    mappings/college.yaml:23: zoho.entities.payments.fields.amount.transform: unknown transform 'decmal' (...)

Loading compiles every entity into an :class:`EntityMapping`: its module, and which field fills
which canonical column through which transform. The canonical tables turn that into SQL over the
raw records (lib/canonical/), so the per-record work happens in the database.

This module imports no Dagster: the Dagster wiring builds a resource from :func:`load_mapping`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from integration_pipelines.lib.canonical.transforms import TRANSFORMS as SQL_TRANSFORMS
from integration_pipelines.lib.warehouse.schema import ZOHO_ENTITY_TABLES, column_kind

__all__ = [
    "BTEC_GRADES",
    "CANONICAL_COLUMNS",
    "DEFAULT_BTEC_THRESHOLDS",
    "DEFAULT_POINTS_PER_CREDIT",
    "TRANSFORMS",
    "BtecConfig",
    "BtecThresholds",
    "CanonicalColumn",
    "ColumnMapping",
    "EntityMapping",
    "FieldMapping",
    "GradeWritebackConfig",
    "IdentityConfig",
    "MappingError",
    "MappingProblem",
    "MoodleConfig",
    "OutboundConfig",
    "PointsPerCredit",
    "RecordTransformError",
    "ZohoMapping",
    "load_mapping",
]

# The Zoho system field every record carries and every sync needs: the upsert path compares it
# so that an older update never overwrites a newer one. (``id`` is always returned by Zoho, and
# the client always requests it, so it is not listed among the fields to request.)
MODIFIED_TIME_FIELD = "Modified_Time"

# Unit grades in rank order: Moodle's gradingform_btec scale values 1..4 (API_NOTES D).
BTEC_GRADES: tuple[str, ...] = ("Refer", "Pass", "Merit", "Distinction")


# The transforms a mapping may name: how a Zoho field value becomes a canonical value, as SQL over
# the raw record (lib/canonical/transforms.py).
TRANSFORMS = tuple(SQL_TRANSFORMS)

# Which transforms can fill a column of each kind. A date column filled through ``identity``
# would hold a string and break every mart that compares dates, so the load rejects it.
_KIND_TRANSFORMS: dict[str, tuple[str, ...]] = {
    "text": ("identity", "strip", "lower", "upper", "email"),
    "ref": ("lookup_id", "strip"),  # a Zoho record id: from a lookup, or a text field holding it
    "int": ("int",),
    "decimal": ("decimal",),
    "date": ("date",),
    "datetime": ("datetime",),
    "bool": ("bool",),
}


# =============================================================================================
# The canonical model: the columns each entity may fill, as the warehouse schema declares them
# (`info=mapped(...)` in lib/warehouse/schema.py): one catalogue for the mapping, the upsert and
# the API.
# =============================================================================================
@dataclass(frozen=True)
class CanonicalColumn:
    """One canonical column an entity's mapping may fill.

    ``required`` columns are the ones other tables join on or a mart cannot do without; a
    mapping must name them. Optional columns a college does not have stay None in every row.
    """

    name: str
    kind: str  # a key of _KIND_TRANSFORMS
    required: bool = False


CANONICAL_COLUMNS: Mapping[str, tuple[CanonicalColumn, ...]] = MappingProxyType(
    {
        entity: tuple(
            CanonicalColumn(column.name, column_kind(column), column.info["required"])
            for column in table.columns
            if column.info.get("mapped")
        )
        for entity, table in ZOHO_ENTITY_TABLES.items()
    }
)
"""Canonical entity -> the columns its mapping may fill, in table order."""


# =============================================================================================
# The file's schema (pydantic). Strict: YAML's "yes" is not silently a string, 40 is not "40".
# =============================================================================================
class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)
    # What the keys of this mapping are, for messages ("unknown entity 'studnets'").
    key_noun: ClassVar[str] = "key"


_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_api_name(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("api_name", "must not be empty")
    if not _API_NAME.fullmatch(value):
        raise PydanticCustomError(
            "api_name",
            "{value} is not a Zoho API name (letters, digits and underscores, starting with a letter)",
            {"value": repr(value)},
        )
    return value


ApiName = Annotated[str, AfterValidator(_check_api_name)]


class IdentityConfig(_Section):
    """How a Moodle user and a Zoho student are recognised as one student (lib/students.py)."""

    moodle_crm_field: Annotated[str, Field(min_length=1)] | None = "crmid"
    """Shortname of the Moodle custom profile field holding the Zoho id; None disables this key."""
    match_on_idnumber: bool = True
    """Match Moodle ``idnumber`` against the Zoho student number."""
    unmatched_warn_share: float = Field(default=0.10, ge=0.0, le=1.0, allow_inf_nan=False)
    """The unmatched-identity asset check warns when more than this share of students is unmatched."""


class BtecThresholds(_Section):
    """Percentage cut-offs from a numeric grade to a BTEC unit grade.

    Refer < pass <= Pass < merit <= Merit < distinction <= Distinction. Pearson defines no
    official mapping; 40/60/70 is the UK higher-education convention (API_NOTES D).
    """

    key_noun: ClassVar[str] = "threshold"

    pass_mark: float = Field(alias="pass", ge=0.0, le=100.0, allow_inf_nan=False)
    merit_mark: float = Field(alias="merit", ge=0.0, le=100.0, allow_inf_nan=False)
    distinction_mark: float = Field(alias="distinction", ge=0.0, le=100.0, allow_inf_nan=False)

    @field_validator("merit_mark", "distinction_mark")
    @classmethod
    def _strictly_increasing(cls, value: float, info: ValidationInfo) -> float:
        # Fields validate in order, so the one below is in info.data unless it was itself invalid.
        assert info.field_name is not None  # a field validator always validates a field
        below = {"merit_mark": ("pass_mark", "pass"), "distinction_mark": ("merit_mark", "merit")}[info.field_name]
        lower = info.data.get(below[0])
        if lower is not None and value <= lower:
            name = "merit" if info.field_name == "merit_mark" else "distinction"
            raise PydanticCustomError(
                "thresholds_order",
                "thresholds must be strictly increasing: {name} ({value}) must be above {below} ({lower})",
                {"name": name, "value": value, "below": below[1], "lower": lower},
            )
        return value

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.pass_mark, self.merit_mark, self.distinction_mark)


class PointsPerCredit(_Section):
    """Points a unit grade earns per credit, for credit-weighted averages.

    The default is Pearson's QCF Level 3 example (7/8/9 for Pass/Merit/Distinction); Higher
    Nationals use 0/1/2 with Pass as the floor. Refer earns nothing by default.
    """

    key_noun: ClassVar[str] = "grade"

    Refer: float = Field(ge=0.0, allow_inf_nan=False)
    Pass: float = Field(ge=0.0, allow_inf_nan=False)
    Merit: float = Field(ge=0.0, allow_inf_nan=False)
    Distinction: float = Field(ge=0.0, allow_inf_nan=False)

    def for_grade(self, grade: str) -> float:
        """Points per credit of ``grade`` (one of BTEC_GRADES); ValueError for anything else."""
        if grade not in BTEC_GRADES:
            raise ValueError(f"not a BTEC unit grade: {grade!r} (expected one of: {', '.join(BTEC_GRADES)})")
        return getattr(self, grade)


# By alias, as a mapping file gives them: a type checker knows the constructor's keywords by alias only.
DEFAULT_BTEC_THRESHOLDS = BtecThresholds.model_validate({"pass": 40.0, "merit": 60.0, "distinction": 70.0})
DEFAULT_POINTS_PER_CREDIT = PointsPerCredit(Refer=0.0, Pass=7.0, Merit=8.0, Distinction=9.0)


class BtecConfig(_Section):
    """BTEC grading: the one place its configuration lives (lib/btec.py takes it as arguments)."""

    thresholds: BtecThresholds = DEFAULT_BTEC_THRESHOLDS
    points_per_credit: PointsPerCredit = DEFAULT_POINTS_PER_CREDIT


class FieldRef(_Section):
    """One canonical column's source: a Zoho field API name and a transform from TRANSFORMS."""

    source: ApiName
    transform: str = "identity"

    @field_validator("transform")
    @classmethod
    def _known_transform(cls, value: str) -> str:
        if value not in TRANSFORMS:
            raise PydanticCustomError(
                "unknown_transform",
                "unknown transform {name} (expected one of: {expected})",
                {"name": repr(value), "expected": ", ".join(TRANSFORMS)},
            )
        return value


def _field_ref_input(required: bool) -> Callable[[Any], Any]:
    def coerce(value: Any) -> Any:
        if isinstance(value, str):  # shorthand: `first_name: First_Name` (identity transform)
            return {"source": value}
        if value is None:
            if required:
                raise PydanticCustomError("required_column", "this column is required and cannot be null")
            return None
        if isinstance(value, (dict, FieldRef)):
            return value
        raise PydanticCustomError(
            "field_ref_type",
            "expected a Zoho field name or a mapping {source, transform}, got {value}",
            {"value": repr(value)},
        )

    return coerce


def _transform_fits(column: CanonicalColumn) -> Callable[[FieldRef | None], FieldRef | None]:
    allowed = _KIND_TRANSFORMS[column.kind]

    def check(ref: FieldRef | None) -> FieldRef | None:
        if ref is not None and ref.transform not in allowed:
            raise PydanticCustomError(
                "transform_kind",
                "transform {transform} cannot fill the {kind} column {column} (use one of: {allowed})",
                {
                    "transform": repr(ref.transform),
                    "kind": column.kind,
                    "column": repr(column.name),
                    "allowed": ", ".join(allowed),
                },
            )
        return ref

    return check


class _ColumnsSection(_Section):
    key_noun: ClassVar[str] = "canonical column"


class _EntitySection(_Section):
    module: ApiName
    """The Zoho module's API name."""


def _entity_models() -> dict[str, type[_EntitySection]]:
    """One pydantic model per entity, built from CANONICAL_COLUMNS so the two never disagree."""
    models: dict[str, type[_EntitySection]] = {}
    for entity, columns in CANONICAL_COLUMNS.items():
        title = "".join(part.title() for part in entity.split("_"))
        column_fields: dict[str, Any] = {}
        for column in columns:
            ref = Annotated[
                FieldRef, BeforeValidator(_field_ref_input(column.required)), AfterValidator(_transform_fits(column))
            ]
            if column.required:
                column_fields[column.name] = (ref, ...)
            else:
                column_fields[column.name] = (
                    Annotated[
                        FieldRef | None,
                        BeforeValidator(_field_ref_input(False)),
                        AfterValidator(_transform_fits(column)),
                    ],
                    None,
                )
        fields_model = create_model(f"{title}Columns", __base__=_ColumnsSection, **column_fields)
        models[entity] = create_model(f"{title}Entity", __base__=_EntitySection, fields=(fields_model, ...))
    return models


_ENTITY_MODELS = _entity_models()


class _EntitiesSectionBase(_Section):
    key_noun: ClassVar[str] = "entity"

    @model_validator(mode="wrap")
    @classmethod
    def _one_entity_per_module(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        """Two entities mapped to one Zoho module would land into, and soft-delete from, the same
        raw records: the second one is reported, at its ``module`` line, naming both."""
        section = handler(data)
        first_of: dict[str, str] = {}
        for entity in type(section).model_fields:
            module = getattr(section, entity).module
            if module in first_of:
                raise ValidationError.from_exception_data(
                    cls.__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "module_mapped_twice",
                                "entities '{first}' and '{second}' are both mapped to the Zoho module '{module}'; "
                                "each module feeds one entity",
                                {"first": first_of[module], "second": entity, "module": module},
                            ),
                            loc=(entity, "module"),
                            input=module,
                        )
                    ],
                )
            first_of[module] = entity
        return section


# One required field per entity, made at import: their definitions are data to a type checker (Any).
_ENTITY_FIELDS: dict[str, Any] = {name: (model, ...) for name, model in _ENTITY_MODELS.items()}
_EntitiesSection = create_model("EntitiesSection", __base__=_EntitiesSectionBase, **_ENTITY_FIELDS)


class _ZohoSection(_Section):
    entities: _EntitiesSection  # type: ignore[valid-type]


class MoodleConfig(_Section):
    """How Moodle records attach to the canonical model."""

    unit_link: Literal["grade_item_idnumber"] = "grade_item_idnumber"
    """A Moodle grade item (assignment) belongs to the unit whose code equals its idnumber."""


# --- Outbound (issue 18): how a BTEC grade is written back to Zoho --------------------------------
_KEY_PLACEHOLDERS = {"student_number", "unit_code"}


def _check_key_format(value: str) -> str:
    names = set(re.findall(r"{([^{}]*)}", value))
    if not names or not names <= _KEY_PLACEHOLDERS:
        raise PydanticCustomError(
            "key_format",
            "{value} must be built from {{student_number}} and {{unit_code}} only",
            {"value": repr(value)},
        )
    return value


class GradeWritebackConfig(_Section):
    """How a Moodle grade becomes one Zoho grade record per student x unit (lib/outbound/).

    The module and the fields written are the ``btec_grades`` entity's own (its mapping, read in
    reverse); what only writing needs is the field Zoho finds the record by on an upsert."""

    duplicate_check_field: ApiName = "Grade_Key"
    """The module's unique field, one value per student x unit: the upsert's duplicate check, which
    makes a repeated upsert update the record the first one created."""
    key_format: Annotated[str, AfterValidator(_check_key_format)] = "{student_number}-{unit_code}"
    """The value of ``duplicate_check_field``, from the student's number and the unit's code."""


class OutboundConfig(_Section):
    btec_grades: GradeWritebackConfig = GradeWritebackConfig()


class _MappingFile(_Section):
    key_noun: ClassVar[str] = "section"

    version: Literal[1]
    identity: IdentityConfig = IdentityConfig()
    btec: BtecConfig = BtecConfig()
    zoho: _ZohoSection
    moodle: MoodleConfig = MoodleConfig()
    outbound: OutboundConfig = OutboundConfig()


# =============================================================================================
# Compiled mappings: what the pipeline uses.
# =============================================================================================
class RecordTransformError(ValueError):
    """A Zoho record's value could not be converted (bad data, not a bad mapping file)."""

    def __init__(self, entity: str, field: str, record_id: Any, reason: str):
        super().__init__(f"{entity} record {record_id!r}: {field}: {reason}")
        self.entity = entity
        self.field = field
        self.record_id = record_id
        self.reason = reason


@dataclass(frozen=True)
class ColumnMapping:
    """One canonical column filled from one Zoho field through one transform."""

    column: str
    source: str
    transform: str


class EntityMapping:
    """One canonical entity's Zoho module, the fields to request, and which field fills each
    column through which transform (lib/canonical/zoho_records.py turns that into SQL)."""

    __slots__ = ("name", "module", "columns", "_source_fields")

    def __init__(self, name: str, module: str, columns: tuple[ColumnMapping, ...]):
        self.name = name
        self.module = module
        self.columns = columns
        self._source_fields = tuple(
            f for f in dict.fromkeys([*(c.source for c in columns), MODIFIED_TIME_FIELD]) if f != "id"
        )

    def __repr__(self) -> str:
        return f"EntityMapping({self.name!r}, module={self.module!r}, columns={len(self.columns)})"

    @property
    def source_fields(self) -> list[str]:
        """The Zoho API field names to request: those the mapping names, plus Modified_Time.

        ``id`` is left out because Zoho returns it with every record and the client requests it.
        """
        return list(self._source_fields)

    def column(self, name: str) -> ColumnMapping | None:
        """How the canonical column `name` is filled; None when the mapping leaves it empty."""
        return next((c for c in self.columns if c.column == name), None)


@dataclass(frozen=True)
class ZohoMapping:
    """The Zoho side: canonical entity name -> its compiled mapping."""

    entities: Mapping[str, EntityMapping]


@dataclass(frozen=True)
class FieldMapping:
    """A college's validated, compiled mapping file (see :func:`load_mapping`)."""

    identity: IdentityConfig
    btec: BtecConfig
    zoho: ZohoMapping
    moodle: MoodleConfig
    file: str
    """The file it was loaded from, for logs and run metadata."""
    outbound: OutboundConfig = OutboundConfig()
    """How grades are written back to Zoho (issue 18)."""


def _compile(spec: _MappingFile, file: str) -> FieldMapping:
    entities: dict[str, EntityMapping] = {}
    for name in CANONICAL_COLUMNS:
        entity = getattr(spec.zoho.entities, name)
        columns = tuple(
            ColumnMapping(column.name, ref.source, ref.transform)
            for column in CANONICAL_COLUMNS[name]
            if (ref := getattr(entity.fields, column.name)) is not None
        )
        entities[name] = EntityMapping(name, entity.module, columns)
    return FieldMapping(
        identity=spec.identity,
        btec=spec.btec,
        zoho=ZohoMapping(MappingProxyType(entities)),
        moodle=spec.moodle,
        file=file,
        outbound=spec.outbound,
    )


# =============================================================================================
# Loading, and errors that point at the file, the line and the field.
# =============================================================================================
@dataclass(frozen=True)
class MappingProblem:
    """One thing wrong with a mapping file. ``line`` is 1-based; None when no line applies."""

    line: int | None
    field: str | None
    message: str


class MappingError(ValueError):
    """A mapping file that cannot be used. The message has one ``file:line: field: problem`` per problem.

    ``file``, ``line`` and ``field`` describe the first problem (``line``/``field`` are None when
    they do not apply, e.g. a missing file); ``problems`` holds them all.
    """

    def __init__(self, file: str, problems: list[MappingProblem]):
        self.file = file
        self.problems = tuple(problems)
        first = self.problems[0]
        self.line = first.line
        self.field = first.field
        super().__init__("\n".join(self._format(p) for p in self.problems))

    def _format(self, problem: MappingProblem) -> str:
        where = self.file if problem.line is None else f"{self.file}:{problem.line}"
        return f"{where}: {problem.field}: {problem.message}" if problem.field else f"{where}: {problem.message}"


DEFAULT_MAPPING = "default.yaml"


def load_mapping(path: str | Path | None = None) -> FieldMapping:
    """Load, validate and compile a mapping file; None loads the packaged default (the sandbox's).

    Raises MappingError naming the file, line and field of every problem found.
    """
    if path is None:
        resource = resources.files("integration_pipelines.mappings").joinpath(DEFAULT_MAPPING)
        with resources.as_file(resource) as default_path:
            return _load(Path(default_path), str(default_path))
    return _load(Path(path), str(path))


def _load(path: Path, file: str) -> FieldMapping:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(file, [MappingProblem(None, None, "mapping file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(file, [MappingProblem(None, None, f"cannot read the mapping file: {exc}")]) from None

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise MappingError(
                file, [MappingProblem(1, None, "the file is empty; expected a mapping with version and zoho")]
            )
        duplicates = sorted(_duplicate_keys(root), key=lambda p: p.line or 0)
        if duplicates:
            raise MappingError(file, duplicates)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = exc.context
        if context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" (from line {exc.context_mark.line + 1})"  # e.g. where an unclosed bracket opened
        reason = ": ".join(p for p in (context, exc.problem) if p)
        raise MappingError(file, [MappingProblem(line, None, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise MappingError(file, [MappingProblem(None, None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()

    try:
        spec = _MappingFile.model_validate(data)
    except ValidationError as exc:
        problems = sorted((_problem(root, err) for err in exc.errors()), key=lambda p: p.line or 0)
        raise MappingError(file, problems) from None
    return _compile(spec, file)


def _duplicate_keys(root: yaml.Node) -> Iterator[MappingProblem]:
    """Keys given twice in one YAML mapping. PyYAML keeps the last silently; a mapping file must not."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes (and may be recursive)
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first_line:
                        message = f"duplicate key {key.value!r} (first given on line {first_line[key.value]})"
                        yield MappingProblem(line, _dotted((*path, key.value)), message)
                    else:
                        first_line[key.value] = line
                    stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))


def _line_of(root: yaml.Node, loc: tuple[str | int, ...]) -> int:
    """The line of the node at ``loc``: the key's line for a mapping entry; when part of ``loc``
    is missing from the file, the line of the nearest enclosing node that is there."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_OWN_ERRORS = {
    "api_name",
    "thresholds_order",
    "unknown_transform",
    "required_column",
    "field_ref_type",
    "transform_kind",
    "key_format",
}


def _section_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the last part of ``loc`` (for listing what keys it allows)."""
    model: type[BaseModel] = _MappingFile
    for part in loc[:-1]:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))  # X | None -> (X, NoneType)
        found = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if found is None:
            return None
        model = found
    return model


def _problem(root: yaml.Node, err: Mapping[str, Any]) -> MappingProblem:
    loc = tuple(p for p in err["loc"] if p != "[key]")
    field = _dotted(loc) or None
    line = _line_of(root, loc)
    kind = err["type"]
    section = _section_at(loc) if loc else None
    noun = getattr(section, "key_noun", "key")
    if kind == "missing":
        message = f"missing required {noun} {loc[-1]!r}"
    elif kind == "extra_forbidden":
        allowed = ", ".join(f.alias or name for name, f in section.model_fields.items()) if section else ""
        message = f"unknown {noun} {loc[-1]!r}" + (f" (expected one of: {allowed})" if allowed else "")
    else:
        message = err["msg"]
        value = err.get("input")
        if kind not in _OWN_ERRORS and not isinstance(value, (dict, list)):
            message += f" (got {value!r})"
    return MappingProblem(line, field, message)
