"""Worker: the user's edge application (modules, bindings, where it runs, how it rolls out)."""

from __future__ import annotations

import base64
import binascii
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    JsonValue,
    WithJsonSchema,
    model_validator,
)

from edgeplane.api.common import (
    AGE_COLUMN,
    DATA_KEY_RE,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    MAX_KEY,
    MAX_NAME,
    MAX_TARGETS,
    READY_COLUMN,
    Condition,
    LabelSelector,
    Resource,
    Wire,
    cel,
    conditions_field,
    exactly_one,
    observed_generation_field,
    validations,
)
from edgeplane.fieldpath import duplicate
from edgeplane.plan import cron as crons
from edgeplane.resolve.artifact import OCI_REF_FORM, OCI_REF_RE, parse_ref
from edgeplane.wire import (
    JS_IDENTIFIER_RE,
    MODULE_NAME_RE,
    VERSION_RE,
    ModuleType,
    check_module_name,
)

# Tighter than bundle.COMPAT_DATE_RE: months 01-12 and days 01-31, so "2024-13-01" fails
# at admission rather than at workerd startup.
STRICT_COMPAT_DATE_RE = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
COMPAT_FLAG_RE = r"^[a-z0-9_]+$"
SHA256_RE = r"^[0-9a-f]{64}$"
KV_NAMESPACE_RE = r"^[A-Za-z0-9_.-]{1,63}$"

MAX_MODULES = 64
MAX_BINDINGS = 128
MAX_MODULE_NAME = 256
# One inline module may be 1 MiB; larger code belongs in a ConfigMap or behind a URL
# (and the whole object must stay well under etcd's 1.5 MiB request limit).
MAX_INLINE = 1 << 20
MAX_URL = 2048
MAX_OCI_REF = 512
# Cloudflare's limit for one environment variable.
MAX_PLAIN_TEXT = 5 * 1024

ModuleName = Annotated[
    str,
    Field(pattern=MODULE_NAME_RE, max_length=MAX_MODULE_NAME),
    AfterValidator(check_module_name),
]
WorkerName = Annotated[str, Field(pattern=DNS_LABEL_RE, max_length=63)]
ObjectName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_RE, max_length=MAX_NAME)]
DataKey = Annotated[str, Field(pattern=DATA_KEY_RE, max_length=MAX_KEY)]
VersionId = Annotated[str, Field(pattern=VERSION_RE, max_length=64)]

WORKER_NAME_RULE = cel(
    "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')",
    "metadata.name: a Worker name is at most 63 lowercase letters, digits and '-', "
    "starting and ending with a letter or digit (Cloudflare script-name rules)",
)


class ConfigMapKeyRef(Wire):
    """A key of a ConfigMap in the Worker's namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the Worker's namespace.")
    key: DataKey = Field(description="Key in the ConfigMap's data (or binaryData) to read.")


class SecretKeyRef(Wire):
    """A key of a Secret in the Worker's namespace."""

    name: ObjectName = Field(description="Name of the Secret, in the Worker's namespace.")
    key: DataKey = Field(description="Key in the Secret's data to read.")


def _check_oci_ref(value: str) -> str:
    try:
        parse_ref(value)
    except ValueError as e:
        raise ValueError(f"modules[].oci.ref: {e}") from None
    return value


class OciSource(Wire):
    """One layer of an OCI artifact, named by digest so its content cannot change."""

    ref: Annotated[str, AfterValidator(_check_oci_ref)] = Field(
        max_length=MAX_OCI_REF,
        description="The artifact as `<host>/<repository>@sha256:<64 hex digits>`: a digest, "
        "not a tag (`edgeplane push` prints it). Credentials come from spec.imagePullSecrets.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"self.matches(r'{OCI_REF_RE}')", f"modules[].oci.ref: {OCI_REF_FORM}")
            ]
        },
    )
    file: ModuleName = Field(
        description="The title (`org.opencontainers.image.title`) of the layer holding this "
        "module; `edgeplane push` titles each layer with its module name."
    )


class LocalObjectReference(Wire):
    """An object in the Worker's namespace, by name."""

    name: ObjectName = Field(description="Name of the object, in the Worker's namespace.")


class WorkerModule(Wire):
    """One module of the Worker's code, from exactly one source."""

    model_config = validations(
        cel(
            "(has(self.inline) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0)"
            " + (has(self.url) ? 1 : 0) + (has(self.oci) ? 1 : 0) == 1",
            "modules[]: set exactly one source: inline, configMapKeyRef, url "
            "with sha256, or oci",
        ),
        cel(
            "!has(self.url) || has(self.sha256)",
            "modules[].sha256: a url source needs sha256, the 64 lowercase hex "
            "digits of the file's SHA-256 (e.g. from `sha256sum`)",
            ".sha256",
        ),
        cel(
            "!has(self.sha256) || has(self.url)",
            "modules[].sha256: only a url source takes sha256; remove it",
            ".sha256",
        ),
    )

    name: ModuleName = Field(
        description="Module name, as other modules import it (e.g. `index.js`, "
        "`lib/util.mjs`). Unique within the Worker; no leading '/', no '.' or '..' segments.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    r"!self.matches(r'(^|/)\.\.?(/|$)') && !self.contains('//')"
                    " && !self.endsWith('/')",
                    "modules[].name: path segments must not be empty, '.' or '..'",
                )
            ]
        },
    )
    type: ModuleType = Field(
        default=ModuleType.ES_MODULE,
        description="How workerd loads the module: esModule (default), commonJsModule, "
        "text, data, json or wasm.",
    )
    inline: str | None = Field(
        default=None,
        max_length=MAX_INLINE,
        description="The module's content written in the manifest (at most 1 MiB). For "
        "data and wasm modules, base64. Use configMapKeyRef or url for larger code.",
    )
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        default=None,
        alias="configMapKeyRef",
        description="Read the content from a ConfigMap key in the Worker's namespace "
        "(binaryData for data and wasm modules).",
    )
    url: str | None = Field(
        default=None,
        max_length=MAX_URL,
        description="Download the content from this https URL; requires sha256, which "
        "the operator checks before deploying.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "isURL(self) && url(self).getScheme() == 'https'"
                    " && url(self).getHostname() != ''",
                    "modules[].url: must be an absolute https:// URL",
                )
            ]
        },
    )
    oci: OciSource | None = Field(
        default=None,
        description="Read the content from a layer of an OCI artifact, pulled by digest with "
        "spec.imagePullSecrets; the operator checks both digests before deploying.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=SHA256_RE,
        max_length=64,
        description="Lowercase hex SHA-256 of the file at url (64 digits); required with "
        "url, not allowed otherwise.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if len(exactly_one(self, ("inline", "config_map_key_ref", "url", "oci"))) != 1:
            raise ValueError(
                "modules[]: set exactly one source: inline, configMapKeyRef, url with "
                "sha256, or oci"
            )
        if (self.url is None) != (self.sha256 is None):
            raise ValueError("modules[].sha256: required with url and only allowed with url")
        if self.url is not None and not _is_https_url(self.url):
            raise ValueError("modules[].url: must be an absolute https:// URL")
        if self.inline is not None and self.type.is_binary:
            try:
                base64.b64decode(self.inline, validate=True)
            except binascii.Error as e:
                raise ValueError(f"modules[].inline: {self.type} content must be base64") from e
        return self


def _is_https_url(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not any(c.isspace() for c in value)


class ServiceBinding(Wire):
    """Call another Worker through a service binding (`env.NAME.fetch(...)`)."""

    worker: WorkerName = Field(
        description="Name of the Worker to call, in the same namespace; it must run on the "
        "same edge targets."
    )


class KvNamespaceBinding(Wire):
    """A Workers KV namespace."""

    namespace: str = Field(
        pattern=KV_NAMESPACE_RE,
        max_length=63,
        description="Identifier of the KV namespace (letters, digits, '_', '.', '-').",
    )


class DurableObjectNamespaceBinding(Wire):
    """A Durable Object namespace whose class this Worker exports."""

    class_name: str = Field(
        alias="className",
        pattern=JS_IDENTIFIER_RE,
        max_length=64,
        description="Name of the exported Durable Object class in the main module.",
    )


# An object, not any JSON value: CEL cannot see a field whose schema has no type, so the
# one-kind-per-binding rule could not count it. Scalars belong in plainText.
JsonBindingValue = Annotated[
    dict[str, JsonValue],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

BINDING_KINDS = (
    "plain_text",
    "json_",
    "secret_key_ref",
    "service",
    "kv_namespace",
    "durable_object_namespace",
)


class WorkerBinding(Wire):
    """A name on the Worker's `env` and what it gives access to: exactly one kind."""

    model_config = validations(
        cel(
            "(has(self.plainText) ? 1 : 0) + (has(self.json) ? 1 : 0)"
            " + (has(self.secretKeyRef) ? 1 : 0) + (has(self.service) ? 1 : 0)"
            " + (has(self.kvNamespace) ? 1 : 0)"
            " + (has(self.durableObjectNamespace) ? 1 : 0) == 1",
            "bindings[]: set exactly one of plainText, json, secretKeyRef, service, "
            "kvNamespace or durableObjectNamespace",
        )
    )

    name: str = Field(
        pattern=JS_IDENTIFIER_RE,
        max_length=64,
        description="Name on `env` in the Worker's code; a JavaScript identifier, unique "
        "within the Worker.",
    )
    plain_text: str | None = Field(
        default=None,
        alias="plainText",
        max_length=MAX_PLAIN_TEXT,
        description="A plain string (an environment variable), at most 5 KiB.",
    )
    json_: JsonBindingValue | None = Field(
        default=None,
        alias="json",
        description="A JSON object (any nesting), passed to the Worker parsed; for a "
        "plain string use plainText.",
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None,
        alias="secretKeyRef",
        description="A secret string read from a Secret key; never logged or shown in "
        "status.",
    )
    service: ServiceBinding | None = Field(
        default=None, description="A service binding to another Worker."
    )
    kv_namespace: KvNamespaceBinding | None = Field(
        default=None, alias="kvNamespace", description="A Workers KV namespace."
    )
    durable_object_namespace: DurableObjectNamespaceBinding | None = Field(
        default=None,
        alias="durableObjectNamespace",
        description="A Durable Object namespace of a class this Worker exports.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if len(exactly_one(self, BINDING_KINDS)) != 1:
            raise ValueError(
                "bindings[]: set exactly one of plainText, json, secretKeyRef, service, "
                "kvNamespace or durableObjectNamespace"
            )
        return self

    @property
    def kind(self) -> str:
        """The wire name of the binding's kind, e.g. `secretKeyRef`."""
        return exactly_one(self, BINDING_KINDS)[0]


class RolloutStrategy(StrEnum):
    ALL_AT_ONCE = "AllAtOnce"
    PROGRESSIVE = "Progressive"


# A version reference: a full id, or a unique prefix of at least 8 hex digits.
VERSION_REF_RE = r"^[0-9a-f]{8,64}$"
VersionRef = Annotated[str, Field(pattern=VERSION_REF_RE, max_length=64)]
PROBE_PATH_RE = r"^/[^\s]*$"
HOST_RE = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$"


class Probe(Wire):
    """An HTTP request sent through a location's router to the new version."""

    path: str = Field(
        pattern=PROBE_PATH_RE,
        max_length=1024,
        description="Path (and query) to request, e.g. `/healthz`. A route of the Worker "
        "must cover it unless host is set.",
    )
    host: str | None = Field(
        default=None,
        pattern=HOST_RE,
        max_length=260,
        description="Host header to send; by default one derived from the Worker's first "
        "route that covers path (a wildcard host becomes `edgeplane-probe.<domain>`).",
    )
    expect_status: int = Field(
        default=200,
        alias="expectStatus",
        ge=100,
        le=599,
        description="The status the response must have.",
    )
    body_contains: str | None = Field(
        default=None,
        alias="bodyContains",
        min_length=1,
        max_length=256,
        description="Text the first 1024 characters of the response body must contain.",
    )
    timeout_seconds: int = Field(
        default=5,
        alias="timeoutSeconds",
        ge=1,
        le=30,
        description="How long to wait for the response; no answer in time fails the gate.",
    )


class Gate(Wire):
    """Checks a step must pass at each location it added before the rollout goes on."""

    model_config = validations(
        cel(
            "has(self.probe) || has(self.maxErrorPercent)",
            "rollout.steps[].gate: set probe, maxErrorPercent, or both",
        )
    )

    probe: Probe | None = Field(
        default=None,
        description="HTTP probe run through the location's router at the end of the hold.",
    )
    max_error_percent: float | None = Field(
        default=None,
        alias="maxErrorPercent",
        ge=0,
        le=100,
        description="Highest share (percent) of the new version's requests at the location "
        "that may end in a 5xx during the hold, from the agent's request counters.",
    )
    min_requests: int = Field(
        default=1,
        alias="minRequests",
        ge=1,
        le=1_000_000,
        description="Fewer requests than this during the hold are too few to judge the "
        "error rate; the gate then rests on the probe alone.",
    )

    @model_validator(mode="after")
    def _checks_something(self) -> Self:
        if self.probe is None and self.max_error_percent is None:
            raise ValueError("rollout.steps[].gate: set probe, maxErrorPercent, or both")
        return self


class RolloutPause(Wire):
    """An empty object (`pause: {}`): the step waits, once its locations serve the new
    version (after its hold and gate), until it is promoted (annotation
    `edgeplane.io/promote: "<version>/<step>"`, or `edgeplane rollout promote`)."""


class RolloutStep(Wire):
    """One step of a progressive rollout: which locations run the new version once it
    is done (counting those of earlier steps), how long to hold, and what to check."""

    model_config = validations(
        cel(
            "(has(self.count) ? 1 : 0) + (has(self.percent) ? 1 : 0)"
            " + (has(self.selector) ? 1 : 0) == 1",
            "rollout.steps[]: set exactly one of count, percent or selector",
        )
    )

    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TARGETS,
        description="Locations running the new version after this step, in all (earlier "
        "steps included); they are taken in name order.",
    )
    percent: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Share of the selected locations running the new version after this "
        "step, rounded up, in name order.",
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Labels of the EdgeTargets this step adds (among the selected ones).",
    )
    hold_seconds: int = Field(
        default=0,
        alias="holdSeconds",
        ge=0,
        le=86400,
        description="How long the step's locations serve the new version before its gate "
        "is judged and the next step starts.",
    )
    gate: Gate | None = Field(
        default=None, description="Checks at the end of the hold; a failure rolls back."
    )
    pause: RolloutPause | None = Field(
        default=None,
        description="`{}`: once the step's locations serve the version (after its hold and "
        "gate), wait until promoted (`edgeplane rollout promote`) or aborted.",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        if len(exactly_one(self, ("count", "percent", "selector"))) != 1:
            raise ValueError("rollout.steps[]: set exactly one of count, percent or selector")
        return self


class Rollout(Wire):
    """How a new version reaches the selected edge targets."""

    model_config = validations(
        cel(
            "!has(self.steps) || size(self.steps) == 0"
            " || (has(self.strategy) && self.strategy != 'AllAtOnce')",
            "rollout.steps: the AllAtOnce strategy deploys to every target at once "
            "and takes no steps; remove steps or set strategy: Progressive",
            ".steps",
        ),
        cel(
            "!has(self.strategy) || self.strategy != 'Progressive'"
            " || (has(self.steps) && size(self.steps) > 0)",
            "rollout.steps: the Progressive strategy needs at least one step",
            ".steps",
        ),
    )

    strategy: RolloutStrategy = Field(
        default=RolloutStrategy.ALL_AT_ONCE,
        description="AllAtOnce (the default): every selected target gets a new version at "
        "once. Progressive: the steps give it to more and more locations, each after a "
        "hold and a gate; a failed gate rolls every location back to the last version "
        "that was Ready everywhere. Locations no step selects get it after the last step.",
    )
    steps: list[RolloutStep] = Field(
        default_factory=list,
        max_length=16,
        description="Steps of a Progressive rollout, in order; not used by AllAtOnce.",
    )

    @model_validator(mode="after")
    def _steps(self) -> Self:
        if self.steps and self.strategy is RolloutStrategy.ALL_AT_ONCE:
            raise ValueError(
                "rollout.steps: the AllAtOnce strategy takes no steps; remove steps or set "
                "strategy: Progressive"
            )
        if not self.steps and self.strategy is RolloutStrategy.PROGRESSIVE:
            raise ValueError("rollout.steps: the Progressive strategy needs at least one step")
        return self


def _cron_expression(value: str) -> str:
    problem = crons.problem(value)
    if problem is not None:
        raise ValueError(problem)  # names the expression; the path is the item's
    return value


# The apiserver checks the shape (5 fields, the dialect's characters) and names the
# expression; the operator's model check (plan/cron.py) finds the rest, e.g. 30 February,
# and the Worker is Stalled saying so.
CronExpression = Annotated[
    str,
    Field(
        min_length=1,
        max_length=crons.MAX_CRON_TEXT,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": r"self.matches(r'^\s*[0-9A-Za-z*/,#-]+(\s+[0-9A-Za-z*/,#-]+){4}\s*$')",
                    "message": "triggers.crons: a cron trigger is 5 fields: minute hour "
                    "day-of-month month day-of-week (UTC), e.g. */30 * * * *",
                    "messageExpression": "'triggers.crons: cron trigger \"' + self + '\" is not "
                    "5 fields (minute hour day-of-month month day-of-week, in UTC) of digits, "
                    "names, L, W, #, *, /, - and commas, e.g. */30 * * * *'",
                }
            ]
        },
    ),
    AfterValidator(_cron_expression),
]


class Triggers(Wire):
    """What runs the Worker besides requests."""

    crons: list[CronExpression] = Field(
        default_factory=list,
        max_length=crons.MAX_CRONS,
        description="Cron triggers, in Cloudflare's syntax: 5 fields (minute hour "
        "day-of-month month day-of-week), in UTC; weekdays 1-7 run from Sunday (or "
        "SUN-SAT); L, W and # as at Cloudflare. Each occurrence runs the Worker's "
        "`scheduled()` handler once for the whole fleet, at one Ready location the operator "
        f"chooses. At most {crons.MAX_CRONS} per Worker.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _unique(self) -> Self:
        dup = duplicate(self.crons, "crons", "expression")
        if dup:
            raise ValueError(dup)
        return self


CompatFlag = Annotated[str, Field(pattern=COMPAT_FLAG_RE, max_length=128)]


# ---- static assets (spec.assets) ------------------------------------------------------
# An asset's path under the site root: no leading '/', no empty, '.' or '..' segment.
ASSET_PATH_RE = r"^[^/\\\x00-\x1f][^\\\x00-\x1f]*$"
MAX_ASSET_ITEMS = 1000
MAX_IGNORE = 256
MAX_RUN_WORKER_FIRST = 100


def check_asset_path(path: str) -> str:
    if any(seg in ("", ".", "..") for seg in path.split("/")):
        raise ValueError(f"{path!r}: path segments must not be empty, '.' or '..'")
    return path


AssetPath = Annotated[
    str, Field(pattern=ASSET_PATH_RE, max_length=1024), AfterValidator(check_asset_path)
]


class AssetItem(Wire):
    """One ConfigMap key and the path it is served at (keys cannot hold '/')."""

    key: DataKey = Field(description="Key in the ConfigMap's data or binaryData.")
    path: AssetPath = Field(
        description="Path of the file under the site root, e.g. `app/main.js` (no leading "
        "'/', no '.' or '..' segments).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    r"!self.matches(r'(^|/)\.\.?(/|$)') && !self.contains('//')"
                    " && !self.endsWith('/')",
                    "assets.configMap.items[].path: path segments must not be empty, '.' or "
                    "'..'",
                )
            ]
        },
    )


class AssetsConfigMap(Wire):
    """Asset files from a ConfigMap in the Worker's namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the Worker's namespace.")
    items: list[AssetItem] | None = Field(
        default=None,
        max_length=MAX_ASSET_ITEMS,
        description="Which keys to serve and at which paths; omitted: every key of data "
        "and binaryData, at the site root under its own name.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class AssetsArchive(Wire):
    """Asset files from a tar archive (optionally gzip'd) at an https URL."""

    url: str = Field(
        max_length=MAX_URL,
        description="https URL of a .tar or .tar.gz whose regular files are the site "
        "(links, absolute paths and '..' are refused).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "isURL(self) && url(self).getScheme() == 'https'"
                    " && url(self).getHostname() != ''",
                    "assets.archive.url: must be an absolute https:// URL",
                )
            ]
        },
    )
    sha256: str = Field(
        pattern=SHA256_RE,
        max_length=64,
        description="Lowercase hex SHA-256 of the archive (64 digits), checked before use.",
    )

    @model_validator(mode="after")
    def _https(self) -> Self:
        if not _is_https_url(self.url):
            raise ValueError("assets.archive.url: must be an absolute https:// URL")
        return self


class HtmlHandling(StrEnum):
    AUTO_TRAILING_SLASH = "auto-trailing-slash"
    FORCE_TRAILING_SLASH = "force-trailing-slash"
    DROP_TRAILING_SLASH = "drop-trailing-slash"
    NONE = "none"


class NotFoundHandling(StrEnum):
    SINGLE_PAGE_APPLICATION = "single-page-application"
    PAGE_404 = "404-page"
    NONE = "none"


# Cloudflare's `run_worker_first` is true, false or patterns; a structural schema cannot
# type such a union (and CEL cannot see an untyped field), so it is patterns only: true
# is ["/*"], false is [] (edgeplane import maps them).
RUN_WORKER_FIRST_RE = r"^!?/[^\x00-\x1f]*$"
RunWorkerFirstPattern = Annotated[str, Field(pattern=RUN_WORKER_FIRST_RE, max_length=256)]

class WorkerAssets(Wire):
    """Static files served at the edge in front of the Worker, with Cloudflare's Workers
    Static Assets semantics (workerd's own implementation)."""

    model_config = validations(
        cel(
            "(has(self.configMap) ? 1 : 0) + (has(self.archive) ? 1 : 0) == 1",
            "assets: set exactly one source: configMap or archive (url with sha256)",
        ),
    )

    config_map: AssetsConfigMap | None = Field(
        default=None, alias="configMap", description="Read the files from a ConfigMap."
    )
    archive: AssetsArchive | None = Field(
        default=None, description="Download the files as a tar(.gz) pinned by sha256."
    )
    ignore: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        max_length=MAX_IGNORE,
        description="Patterns of files not to serve (`.assetsignore` syntax: `*.map`, "
        "`drafts/`, `/private/*`).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    html_handling: HtmlHandling = Field(
        default=HtmlHandling.AUTO_TRAILING_SLASH,
        alias="htmlHandling",
        description="How HTML paths and trailing slashes resolve: auto-trailing-slash "
        "(default), force-trailing-slash, drop-trailing-slash or none.",
    )
    not_found_handling: NotFoundHandling = Field(
        default=NotFoundHandling.NONE,
        alias="notFoundHandling",
        description="A path with no file: single-page-application (serve /index.html, "
        "200), 404-page (the nearest 404.html, 404) or none (the Worker, or 404).",
    )
    run_worker_first: list[RunWorkerFirstPattern] = Field(
        default_factory=list,
        alias="runWorkerFirst",
        max_length=MAX_RUN_WORKER_FIRST,
        description="Paths the Worker answers before any file (it serves files through "
        "its binding): patterns such as `/api/*`, `!/api/docs/*` to exclude, or `/*` for "
        "every request (wrangler's `true`); empty (default): files first, the Worker for "
        "the rest.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    binding: str | None = Field(
        default=None,
        pattern=JS_IDENTIFIER_RE,
        max_length=64,
        description="Name on `env` (e.g. `ASSETS`) whose fetch() serves the files to the "
        "Worker's code.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(exactly_one(self, ("config_map", "archive"))) != 1:
            raise ValueError(
                "assets: set exactly one source: configMap or archive (url with sha256)"
            )
        return self


class WorkerSpec(Wire):
    """What the Worker runs, where, and how new versions roll out."""

    model_config = validations(
        cel(
            "!has(self.mainModule) || self.modules.exists(m, m.name == self.mainModule)",
            "mainModule: must name one of spec.modules[].name, or leave it out to use "
            "the first module",
            ".mainModule",
        )
    )

    modules: list[WorkerModule] = Field(
        min_length=1,
        max_length=MAX_MODULES,
        description="The Worker's code as modules, each from one source. The main module "
        "is mainModule, or the first one.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    main_module: ModuleName | None = Field(
        default=None,
        alias="mainModule",
        description="Name of the module workerd runs; defaults to the first module.",
    )
    compatibility_date: str = Field(
        alias="compatibilityDate",
        pattern=STRICT_COMPAT_DATE_RE,
        max_length=10,
        description="workerd compatibility date (YYYY-MM-DD): the runtime behaves as it "
        "did on this date.",
    )
    compatibility_flags: list[CompatFlag] = Field(
        default_factory=list,
        alias="compatibilityFlags",
        max_length=64,
        description="workerd compatibility flags to turn single behaviours on or off, e.g. "
        "nodejs_compat.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    bindings: list[WorkerBinding] = Field(
        default_factory=list,
        max_length=MAX_BINDINGS,
        description="Names on the Worker's `env`: variables, JSON, secrets, other Workers, "
        "KV and Durable Object namespaces. Names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    targets: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Label selector over EdgeTargets the Worker runs on; omitted or {} "
        "selects every EdgeTarget.",
    )
    rollout: Rollout = Field(
        default_factory=Rollout, description="How new versions reach the targets."
    )
    assets: WorkerAssets | None = Field(
        default=None,
        description="Static files served at the edge on the Worker's routes (Workers "
        "Static Assets): from a ConfigMap or a pinned archive, with Cloudflare's "
        "htmlHandling, notFoundHandling and runWorkerFirst.",
    )
    version: VersionRef | None = Field(
        default=None,
        description="Pin a retained version (`kubectl get workerversions`; a unique prefix "
        "of at least 8 hex digits is enough): it is served from its recorded modules, "
        "whatever the spec and its ConfigMaps say now, and rolls out like any new version. "
        "Remove it to return to the version the spec compiles to.",
    )
    triggers: Triggers | None = Field(
        default=None, description="Cron triggers: when the Worker runs without a request."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        alias="imagePullSecrets",
        max_length=16,
        description="Secrets of type kubernetes.io/dockerconfigjson in the Worker's namespace "
        "holding credentials for the registries of `oci` modules; the first that names a "
        "registry's host is used for it. None: pulled anonymously.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # The same indexes and words as the apiserver's list-type map and set checks.
        names = [m.name for m in self.modules]
        dup = duplicate(self.compatibility_flags, "compatibilityFlags", "flag") or duplicate(
            names, "modules", "module name"
        )
        if dup:
            raise ValueError(dup)
        if self.main_module is not None and self.main_module not in names:
            raise ValueError("mainModule: must name one of spec.modules[].name")
        dup = duplicate([b.name for b in self.bindings], "bindings", "binding name")
        if dup:
            raise ValueError(dup)
        if self.assets and self.assets.binding in {b.name for b in self.bindings}:
            raise ValueError(
                f"assets.binding: {self.assets.binding!r} is also a name in spec.bindings; "
                "rename one of them"
            )
        pulls = [s.name for s in self.image_pull_secrets]
        if dup := duplicate(pulls, "imagePullSecrets", "Secret name"):
            raise ValueError(dup)
        return self

    @property
    def main(self) -> str:
        """The name of the module workerd runs."""
        return self.main_module or self.modules[0].name


MAX_TARGET_MESSAGE = 4096


class TargetStatus(Wire):
    """What one edge target serves for this Worker."""

    name: str = Field(max_length=MAX_NAME, description="Name of the EdgeTarget.")
    version: str | None = Field(
        default=None,
        max_length=64,
        description="Version id the target serves (or is being given).",
    )
    state: str = Field(
        max_length=64,
        description="Ready (serves the latest version), Pending (its rollout step has not "
        "come), RolledBack, Deploying, Failed (refused the latest version), Unreachable, "
        "Quarantined (refuses to run a version it serves, which hung its cell repeatedly; "
        "answers 502 for it) or ServiceMissing (a service binding's Worker is not there).",
    )
    message: str = Field(
        default="", max_length=MAX_TARGET_MESSAGE, description="Details, e.g. the agent's error."
    )
    quarantined: list[VersionId] | None = Field(
        default=None,
        max_length=16,
        description="With state Quarantined: the versions it serves (the primary, or with "
        "traffic) that it quarantined; kept while it is Unreachable.",
    )
    last_transition_time: AwareDatetime | None = Field(
        default=None,
        alias="lastTransitionTime",
        description="When state last changed (RFC 3339).",
    )


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"  # pushing the current step's locations
    HOLDING = "Holding"  # the current step's locations serve it; waiting out the hold
    COMPLETE = "Complete"  # every selected location was given the version
    ROLLED_BACK = "RolledBack"  # a gate failed or it was aborted; fromVersion everywhere
    PAUSED = "Paused"  # the current step's `pause`: waiting for a promote or an abort


class GateResult(Wire):
    """The outcome of one step's gate at one location."""

    step: int = Field(ge=1, description="Step number, from 1.")
    target: str = Field(max_length=MAX_NAME, description="Name of the EdgeTarget.")
    passed: bool = Field(description="Whether the gate passed at this location.")
    probe: str | None = Field(
        default=None,
        max_length=1100,
        description="The probe request, e.g. `GET http://example.com/healthz`.",
    )
    response: str | None = Field(
        default=None,
        max_length=600,
        description="The probe's response: status and the start of the body.",
    )
    message: str = Field(
        default="", max_length=1024, description="Why it passed or failed, incl. error rate."
    )
    time: AwareDatetime = Field(description="When the gate was judged (RFC 3339).")


class RequestCount(Wire):
    """A location's request counters for the new version when its hold began."""

    target: str = Field(max_length=MAX_NAME, description="Name of the EdgeTarget.")
    total: int = Field(ge=0, description="Requests the version had answered.")
    errors: int = Field(ge=0, description="Of which ended in a 5xx.")


class RolloutActionKind(StrEnum):
    PROMOTE = "Promote"  # annotation edgeplane.io/promote: "<version>/<step>"
    ABORT = "Abort"  # annotation edgeplane.io/abort: "<version>"


class RolloutAction(Wire):
    """A promote or abort the operator read from the Worker's annotations, once each."""

    action: RolloutActionKind = Field(description="Promote or Abort.")
    value: str = Field(max_length=128, description="The annotation's value as read.")
    step: int = Field(ge=1, description="The rollout's step when it was read.")
    applied: bool = Field(
        description="Whether it acted; false: it was stale or named another version or step."
    )
    message: str = Field(default="", max_length=1024, description="What it did, or why not.")
    time: AwareDatetime = Field(description="When it was read (RFC 3339).")


class RolloutStatus(Wire):
    """Where the rollout of the newest version stands; the operator resumes from here."""

    version: VersionId = Field(description="The version being rolled out.")
    from_version: VersionId | None = Field(
        default=None,
        alias="fromVersion",
        description="The last version Ready everywhere: what locations not yet reached "
        "serve, and what a failed gate rolls back to.",
    )
    phase: RolloutPhase = Field(
        description="Progressing, Holding, Paused, Complete or RolledBack."
    )
    step: int = Field(ge=1, description="The current step, from 1.")
    steps: int = Field(ge=1, description="Steps in all (AllAtOnce has one).")
    progress: str = Field(
        pattern=r"^[0-9]+/[0-9]+$", max_length=16, description="step/steps, e.g. 1/2."
    )
    hold_start: AwareDatetime | None = Field(
        default=None,
        alias="holdStart",
        description="When every location of the current step served the version.",
    )
    hold_until: AwareDatetime | None = Field(
        default=None, alias="holdUntil", description="When the current step's hold ends."
    )
    baseline: list[RequestCount] = Field(
        default_factory=list,
        max_length=MAX_TARGETS,
        description="Request counters at the start of the hold, for the error-rate gate.",
    )
    gates: list[GateResult] = Field(
        default_factory=list,
        max_length=64,
        description="Gate results of this rollout, oldest first.",
    )
    failure: GateResult | None = Field(
        default=None, description="The gate result that rolled the version back."
    )
    paused_since: AwareDatetime | None = Field(
        default=None,
        alias="pausedSince",
        description="With phase Paused: since when the current step (`step`) waits to be "
        "promoted.",
    )
    actions: list[RolloutAction] = Field(
        default_factory=list,
        max_length=32,
        description="Promotes and aborts of this rollout read from the annotations, oldest "
        "first, each once.",
    )


class CronStatus(Wire):
    """Where the Worker's cron triggers run, and their last run."""

    location: str | None = Field(
        default=None, max_length=MAX_NAME,
        description="The EdgeTarget that runs the schedule now; none while no selected "
        "location is Ready.",
    )
    next_run: AwareDatetime | None = Field(
        default=None, alias="nextRun", description="The next occurrence (RFC 3339, UTC)."
    )
    last_run: AwareDatetime | None = Field(
        default=None, alias="lastRun", description="The occurrence that ran last."
    )
    last_location: str | None = Field(
        default=None, alias="lastLocation", max_length=MAX_NAME,
        description="The EdgeTarget where it ran.",
    )
    last_outcome: str | None = Field(
        default=None, alias="lastOutcome", max_length=64,
        description="How it ended, after retries: ok, or workerd's outcome (exception, "
        "exceededCpu, ...).",
    )


class WorkerStatus(Wire):
    """What the operator observed; written through the status subresource only."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field(
        "Ready, Reconciling and Stalled (kstatus-compatible), one of each type."
    )
    latest_version: VersionId | None = Field(
        default=None,
        alias="latestVersion",
        description="The version the spec asks for: the pinned spec.version, or the sha256 "
        "of the bundle the spec compiles to.",
    )
    ready_version: VersionId | None = Field(
        default=None,
        alias="readyVersion",
        description="The last version every selected target was given: what locations "
        "a rollout has not reached serve, and what a failed gate rolls back to.",
    )
    targets: list[TargetStatus] = Field(
        default_factory=list,
        max_length=MAX_TARGETS,
        description="Per selected edge target: the version it serves and its state.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="Progress of the newest version's rollout."
    )
    failed_versions: list[VersionId] = Field(
        default_factory=list,
        alias="failedVersions",
        max_length=10,
        description="Versions rolled back after a failed gate, newest last; they stay "
        "recorded as WorkerVersions until pruned.",
    )
    ready_targets: str | None = Field(
        default=None,
        alias="readyTargets",
        max_length=32,
        pattern=r"^[0-9]+/[0-9]+$",
        description="Targets serving the latest version out of those selected, e.g. 2/3.",
    )
    cron: CronStatus | None = Field(
        default=None, description="Where the cron triggers run, and their last run."
    )


class Worker(Resource):
    """An edge Worker: JavaScript or Wasm modules with bindings, deployed to the edge
    targets its selector picks. The operator compiles each spec into an immutable
    WorkerVersion."""

    KIND: ClassVar[str] = "Worker"
    PLURAL: ClassVar[str] = "workers"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ew",)
    ROOT_RULES: ClassVar[tuple[dict[str, str], ...]] = (WORKER_NAME_RULE,)
    NAME_PATTERN: ClassVar[str | None] = DNS_LABEL_RE
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        READY_COLUMN,
        {"name": "Targets", "type": "string", "jsonPath": ".status.readyTargets"},
        {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.phase"},
        {"name": "Step", "type": "string", "jsonPath": ".status.rollout.progress"},
        AGE_COLUMN,
        # 64 hex digits: only in -o wide.
        {"name": "Version", "type": "string", "priority": 1, "jsonPath": ".status.readyVersion"},
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
    )

    spec: WorkerSpec
    status: WorkerStatus | None = None

    @model_validator(mode="after")
    def _script_name(self) -> Self:
        # Empty when a caller builds a Worker without metadata (e.g. in a test).
        if self.metadata.name and not re.fullmatch(DNS_LABEL_RE, self.metadata.name):
            raise ValueError(WORKER_NAME_RULE["message"])
        return self

    @property
    def full_name(self) -> str:
        """`<namespace>.<name>`: the Worker's name in bundles and at the edge."""
        return f"{self.metadata.namespace}.{self.metadata.name}"


__all__ = [
    "ConfigMapKeyRef",
    "CronStatus",
    "DurableObjectNamespaceBinding",
    "Gate",
    "GateResult",
    "KvNamespaceBinding",
    "Probe",
    "RequestCount",
    "Rollout",
    "RolloutPhase",
    "RolloutStatus",
    "RolloutStep",
    "RolloutStrategy",
    "SecretKeyRef",
    "ServiceBinding",
    "TargetStatus",
    "Triggers",
    "Worker",
    "WorkerAssets",
    "WorkerBinding",
    "WorkerModule",
    "WorkerSpec",
    "WorkerStatus",
]
