"""The wire contract between the operator and an edge agent.

A `Bundle` is one compiled, immutable Worker version: every module's bytes and every
binding's resolved value. Its `version` is the sha256 of its canonical JSON form, so the
same inputs always give the same id and an agent can accept a PUT idempotently.

A `Deployment` says what one location should serve for one Worker: the bundles of every
version in use, which version is primary, and the routes with their traffic split.
`Exclusions` are one namespace's routes without a Worker. An `InventoryItem` is what a
location reports back about one Worker (`GET /v1/workers`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edgeplane.fieldpath import duplicate
from edgeplane.plan import cron as crons
from edgeplane.routing import check_pattern, conflict_key

# "<namespace>.<worker>": two DNS labels, so a Worker name is unique across namespaces
# and safe to use in file names and workerd service names.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
WORKER_NAME_RE = rf"^{_LABEL}\.{_LABEL}$"
NAMESPACE_RE = _LABEL
# Module names become paths inside the bundle: no leading "/", no backslash, and (checked
# by `check_module_name`) no "." or ".." segment.
MODULE_NAME_RE = r"^[A-Za-z0-9_@][A-Za-z0-9_.@/+-]{0,255}$"
JS_IDENTIFIER_RE = r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}$"
VERSION_RE = r"^[0-9a-f]{64}$"
COMPAT_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"

# Cloudflare's limits on one Worker's modules (paid plan): after gzip, and before.
MAX_COMPRESSED = 10 * 1000 * 1000
MAX_UNCOMPRESSED = 64 * 1000 * 1000
# A rollout serves two versions of a Worker at each location at once (from and to).
ROLLOUT_VERSIONS = 2
# What a deployment carries besides its modules' content: bindings (128 of 5 KB each per
# version), up to 1,000 routes, names and JSON framing.
DEPLOYMENT_OVERHEAD = 4 * 1024 * 1024
# Push bodies at least this long travel gzipped (Content-Encoding), with their decoded
# length in this header so the agent can reserve it before reading.
GZIP_FROM = 64 * 1024
DECODED_LENGTH_HEADER = "Edgeplane-Decoded-Length"


def body_limit(versions: int = ROLLOUT_VERSIONS, modules: int = MAX_UNCOMPRESSED) -> int:
    """The largest decoded PUT body a location must take so that `versions` versions of a
    Worker at Cloudflare's size limit can be served at once: binary modules travel as
    base64 (4/3 of their bytes), text as JSON strings."""
    return versions * -(-modules * 4 // 3) + DEPLOYMENT_OVERHEAD


def rollout_size_refusal(bundle_json: int, limits: Mapping[str, int]) -> str | None:
    """Why a version of `bundle_json` bytes (its JSON form, as pushed) cannot be rolled
    out to the locations with these body limits, or None. A rollout pushes it beside the
    version it replaces, which passed the same check, so two of the larger one must fit."""
    need = ROLLOUT_VERSIONS * bundle_json + DEPLOYMENT_OVERHEAD
    over = {t: n for t, n in limits.items() if need > n}
    if not over:
        return None
    target = min(over, key=lambda t: (over[t], t))
    return (
        f"spec.modules: a rollout pushes {ROLLOUT_VERSIONS} versions at once, {need} bytes "
        f"with this one ({bundle_json} bytes as JSON), over the {over[target]} byte request "
        f"limit of EdgeTarget {target} (its agent's --max-body); trim the Worker's modules "
        "(binary modules count 4/3, as base64) or raise the agent's limit"
    )


def retry_after_seconds(header: str | None) -> float | None:
    """An agent's Retry-After (delta seconds) as a wait of 0.1 to 10 s, or None when it sent
    none: only an agent that says when to come back is retried at once."""
    if header is None or not header.strip().isdigit():
        return None
    return min(max(float(header.strip()), 0.1), 10.0)


def gzip_worthy(length: int) -> bool:
    """Whether a push body of `length` bytes is sent gzipped: small ones are not worth it."""
    return length >= GZIP_FROM


def body_reservation(
    max_body: int, content_length: int | None, encoded: bool, declared: str | None
) -> int | None:
    """How many bytes the agent reserves for a request body before reading it, which is also
    the most it reads; None if the request says its body is over `max_body` (413). A gzipped
    body reserves its declared decoded length (else `max_body`); a plain one its length."""
    if not encoded and content_length is not None:
        size = content_length
    elif declared is not None and declared.isascii() and declared.isdigit():
        size = int(declared)
    else:
        return max_body
    return None if size > max_body else size


def check_module_name(name: str) -> str:
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        raise ValueError(f"module name {name!r} must not contain empty, '.' or '..' segments")
    return name


ModuleName = Annotated[str, Field(pattern=MODULE_NAME_RE), AfterValidator(check_module_name)]
WorkerName = Annotated[str, Field(pattern=WORKER_NAME_RE, max_length=127)]
VersionId = Annotated[str, Field(pattern=VERSION_RE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModuleType(StrEnum):
    ES_MODULE = "esModule"
    COMMONJS_MODULE = "commonJsModule"
    TEXT = "text"
    DATA = "data"
    JSON = "json"
    WASM = "wasm"

    @property
    def is_binary(self) -> bool:
        return self in (ModuleType.DATA, ModuleType.WASM)


class BundleModule(_Strict):
    """A module with its content, or by reference: only the sha256 of its bytes, which the
    location holds as a blob (edge/blobs.py), so an unchanged module never travels twice."""

    name: ModuleName
    type: ModuleType
    # UTF-8 text for source, text and json modules; base64 for data and wasm.
    content: str | None = None
    # sha256 of the module's bytes (`raw`); not part of the version id, which hashes content.
    sha256: str | None = Field(default=None, pattern=VERSION_RE)

    @model_validator(mode="after")
    def _content_or_reference(self) -> Self:
        if self.content is None and self.sha256 is None:
            raise ValueError(f"modules.{self.name}: needs content or sha256")
        return self

    def raw(self) -> bytes:
        if self.content is None:
            raise ValueError(f"module {self.name}: by reference ({self.sha256}), no content")
        if self.type.is_binary:
            return base64.b64decode(self.content, validate=True)
        return self.content.encode()

    def digest(self) -> str:
        """sha256 of the module's bytes: as recorded, or computed from its content."""
        return self.sha256 or hashlib.sha256(self.raw()).hexdigest()

    def by_reference(self) -> BundleModule:
        return self.model_copy(update={"content": None, "sha256": self.digest()})

    def with_content(self, raw: bytes) -> BundleModule:
        """This module given its bytes (a blob, checked against sha256 by the store)."""
        content = base64.b64encode(raw).decode() if self.type.is_binary else raw.decode()
        return BundleModule(name=self.name, type=self.type, content=content, sha256=self.digest())


class BundleBinding(_Strict):
    """One binding with its value resolved; exactly one field besides `name` is set."""

    name: str = Field(pattern=JS_IDENTIFIER_RE)
    text: str | None = None
    json_: str | None = Field(default=None, alias="json")
    # Secret text: served to the Worker like `text`, but never logged or reported.
    secret: str | None = Field(default=None, repr=False)
    # What the version id hashes instead of the secret: a keyed digest of it (secret_digest),
    # so a version id (which is public) never lets anyone test guesses of the value.
    secret_digest: str | None = Field(
        default=None, alias="secretDigest", pattern=r"^(hmac-sha256|sha256):[0-9a-f]{64}$"
    )
    # Another Worker at the same location, by its full "<namespace>.<worker>" name.
    service: str | None = Field(default=None, pattern=WORKER_NAME_RE)
    # "<namespace>.<id>": KV data is never shared across Kubernetes namespaces.
    kv_namespace: str | None = Field(
        default=None, alias="kvNamespace", pattern=r"^[A-Za-z0-9_.-]{1,127}$"
    )
    durable_object_class: str | None = Field(
        default=None, alias="durableObjectClass", pattern=JS_IDENTIFIER_RE
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        fields = self.model_dump(exclude={"name", "secret_digest"})
        kinds = [k for k, v in fields.items() if v is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"binding {self.name!r} must set exactly one of text, json, secret, service, "
                f"kvNamespace, durableObjectClass (got {len(kinds)})"
            )
        if self.json_ is not None:
            try:
                json.loads(self.json_)
            except ValueError as e:
                raise ValueError(f"json: not valid JSON text ({e})") from None
        if (self.secret is None) != (self.secret_digest is None):
            if self.secret is None:
                raise ValueError(f"binding {self.name!r}: secretDigest goes with secret only")
            # Not given: the unkeyed digest (tests, or an operator without a key).
            object.__setattr__(self, "secret_digest", secret_digest("", self.secret))
        return self


class AssetFile(_Strict):
    """One static asset of a version: where it is served and the blob that holds it."""

    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=VERSION_RE)
    size: int = Field(ge=0)

    @model_validator(mode="after")
    def _safe(self) -> Self:
        # The agent makes this a file under the Worker's site directory.
        if self.path.startswith("/") or "\\" in self.path or "\x00" in self.path:
            raise ValueError(f"assets.files: {self.path!r} must be relative, without '\\'")
        check_module_name(self.path)
        return self


class BundleAssets(_Strict):
    """A version's static assets: workerd's AssetsService config (JSON text), the name
    of the binding that serves them to the Worker, and the files by content. The files'
    bytes travel apart, as blobs the location does not hold yet (`/v1/blobs`)."""

    config: str = Field(max_length=64 * 1024)
    binding: str | None = Field(default=None, pattern=JS_IDENTIFIER_RE)
    files: tuple[AssetFile, ...] = Field(default=(), max_length=100_000)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        dup = duplicate([f.path for f in self.files], "assets.files", "path")
        if dup:
            raise ValueError(dup)
        try:
            json.loads(self.config)
        except ValueError as e:
            raise ValueError(f"assets.config: not valid JSON text ({e})") from None
        return self

    def digest(self) -> str:
        """Names the site: the same files and options always give the same digest."""
        body = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def blobs(self) -> set[str]:
        return {f.sha256 for f in self.files}


class Bundle(_Strict):
    worker: WorkerName
    compatibility_date: str = Field(alias="compatibilityDate", pattern=COMPAT_DATE_RE)
    compatibility_flags: tuple[str, ...] = Field(
        default=(), alias="compatibilityFlags", max_length=64
    )
    main_module: ModuleName = Field(alias="mainModule")
    modules: tuple[BundleModule, ...] = Field(min_length=1, max_length=256)
    bindings: tuple[BundleBinding, ...] = Field(default=(), max_length=128)
    # Static assets; part of the version id, so a changed file is a new version.
    assets: BundleAssets | None = None
    # sha256 of the canonical form without this field; see `with_version`.
    version: VersionId | None = None
    # With a version registry: the repository ("host[:port]/path") holding the modules as
    # layers by digest, where a location may pull those it lacks (versions/artifacts.py).
    repository: str | None = Field(default=None, max_length=512)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Each message starts with its field: the agent's 422 names it (fieldpath).
        names = [m.name for m in self.modules]
        dup = duplicate(names, "modules", "module name")
        if dup:
            raise ValueError(dup)
        if self.main_module not in names:
            raise ValueError(f"mainModule: {self.main_module!r} is not one of the modules")
        if self.modules[0].name != self.main_module:
            raise ValueError(
                "modules[0]: the main module must come first (workerd runs the first one)"
            )
        dup = duplicate([b.name for b in self.bindings], "bindings", "binding name")
        if dup:
            raise ValueError(dup)
        if self.assets and self.assets.binding in {b.name for b in self.bindings}:
            raise ValueError(f"assets.binding: {self.assets.binding!r} is also a binding name")
        # By reference, the id is checked once the location has the modules (`hydrated`).
        if self.version is not None and not self.has_references() and (
            self.version != self.compute_version()
        ):
            raise ValueError("version: does not match the sha256 of the bundle's content")
        return self

    def has_references(self) -> bool:
        """Whether some module travels by reference (no content here)."""
        return any(m.content is None for m in self.modules)

    def canonical(self) -> bytes:
        """The bytes the version id hashes: sorted keys, no whitespace, no version, and each
        secret by its digest only; modules by content (their recorded sha256 and where to
        pull them from are delivery, not the version)."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"version", "repository"})
        for binding in body["bindings"]:
            binding.pop("secret", None)
        for module in body["modules"]:
            module.pop("sha256", None)
        if body["assets"] is None:
            del body["assets"]  # versions without assets keep the ids they had
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def compute_version(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def with_version(self) -> Bundle:
        return self.model_copy(update={"version": self.compute_version()})

    def size(self) -> int:
        return sum(len(m.raw()) for m in self.modules)

    def by_reference(self) -> Bundle:
        """This version with every module by reference: what a location stores and, when
        it can take it, what is sent to it."""
        return self.model_copy(update={"modules": tuple(m.by_reference() for m in self.modules)})

    def hydrated(self, raw_of: Callable[[str], bytes]) -> Bundle:
        """This version with every module's content, those by reference read by sha256 with
        `raw_of`; validated again, so a version id that does not match its modules is a
        ValueError. Modules that came with content get their sha256 recorded."""
        modules = tuple(
            m.with_content(raw_of(m.sha256)) if m.content is None and m.sha256 else
            m.model_copy(update={"sha256": hashlib.sha256(m.raw()).hexdigest()})
            for m in self.modules
        )
        body = self.model_dump(by_alias=True, exclude={"modules"})
        return Bundle.model_validate({**body, "modules": modules})

    def secrets(self) -> list[str]:
        """The secret binding values, for redacting them wherever text leaves the process."""
        return [b.secret for b in self.bindings if b.secret]


class TrafficSplit(_Strict):
    version: VersionId
    percent: int = Field(ge=0, le=100)


class Route(_Strict):
    # Cloudflare route pattern, e.g. "*.example.com/api/*".
    pattern: Annotated[str, AfterValidator(check_pattern)]
    # Empty: all of the route's traffic goes to the Deployment's primary version.
    traffic: tuple[TrafficSplit, ...] = Field(default=(), max_length=16)

    @model_validator(mode="after")
    def _sums_to_100(self) -> Self:
        if self.traffic and sum(t.percent for t in self.traffic) != 100:
            raise ValueError(f"traffic: percents must sum to 100 (route {self.pattern!r})")
        return self


def _exclusion_pattern(pattern: str) -> str:
    """check_pattern without its "pattern: " prefix: an exclusion is an item of patterns,
    which the error's location already names."""
    try:
        return check_pattern(pattern)
    except ValueError as e:
        raise ValueError(str(e).removeprefix("pattern: ")) from None


class Exclusions(_Strict):
    """A namespace's route patterns that name no Worker: requests they match bypass
    Workers, so less specific routes of any Worker do not see them."""

    patterns: tuple[Annotated[str, AfterValidator(_exclusion_pattern)], ...] = Field(
        default=(), max_length=1000
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        dup = duplicate([conflict_key(p) for p in self.patterns], "patterns", "pattern")
        if dup:
            raise ValueError(dup.replace("each may", "each pattern may"))
        return self


class Deployment(_Strict):
    worker: WorkerName
    # The version that routes without a split and service bindings from other Workers use.
    primary: VersionId
    versions: tuple[Bundle, ...] = Field(min_length=1, max_length=16)
    routes: tuple[Route, ...] = Field(default=(), max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = []
        for i, b in enumerate(self.versions):
            if b.worker != self.worker:
                raise ValueError(
                    f"versions[{i}].worker: {b.worker!r} is not the deployment's {self.worker!r}"
                )
            if b.version is None:
                raise ValueError(f"versions[{i}].version: required in a deployment")
            ids.append(b.version)
        dup = duplicate(ids, "versions", "version")
        if dup:
            raise ValueError(dup)
        if self.primary not in ids:
            raise ValueError("primary: must be one of the deployment's versions")
        for i, r in enumerate(self.routes):
            for j, t in enumerate(r.traffic):
                if t.version not in ids:
                    raise ValueError(
                        f"routes[{i}].traffic[{j}].version: {t.version[:12]} is not one of the "
                        "deployment's versions"
                    )
        return self

    def by_reference(self) -> Deployment:
        """Every module by reference (`Bundle.by_reference`)."""
        return self.model_copy(update={"versions": tuple(b.by_reference() for b in self.versions)})

    def whole(self) -> Deployment:
        """Without `repository` and the modules' recorded sha256, which an agent of an
        earlier release does not know (its model refuses unknown fields); the operator's
        deployments carry every module's content."""
        versions = tuple(
            b.model_copy(update={
                "repository": None,
                "modules": tuple(m.model_copy(update={"sha256": None}) for m in b.modules),
            })
            for b in self.versions
        )
        return self.model_copy(update={"versions": versions})

    def hydrated(self, raw_of: Callable[[str], bytes]) -> Deployment:
        """Every module with its content (`Bundle.hydrated`): ValueError if a version's id
        does not match its modules; what `raw_of` raises for a module it lacks."""
        versions = tuple(b.hydrated(raw_of) for b in self.versions)
        return self.model_copy(update={"versions": versions})

    def identity(self) -> str:
        """A digest of what is deployed, so a repeated PUT can be recognised as a no-op."""
        return deployment_identity(
            self.primary, [b.version or "" for b in self.versions], self.routes
        )


def blobs_of(deployments: Iterable[Deployment | None]) -> set[str]:
    """Every blob the deployments' versions reference, assets' files and modules by
    reference (all versions: a rollback to one needs no upload)."""
    out: set[str] = set()
    for d in deployments:
        for b in d.versions if d else ():
            out.update(m.sha256 for m in b.modules if m.sha256)
            if b.assets:
                out.update(b.assets.blobs())
    return out


def deployment_identity(primary: str, versions: Iterable[str], routes: Iterable[Route]) -> str:
    """`Deployment.identity` from the version ids alone, before any bundle is loaded."""
    body = {
        "primary": primary,
        "versions": sorted(versions),
        "routes": [r.model_dump(mode="json") for r in routes],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _cron(expression: str) -> str:
    problem = crons.problem(expression)
    if problem is not None:
        raise ValueError(problem)
    return expression.strip()


CronText = Annotated[str, Field(max_length=crons.MAX_CRON_TEXT), AfterValidator(_cron)]
# The longest cron lease: a location the operator cannot reach stops scheduling within it.
MAX_CRON_LEASE = 300.0


class CronLease(_Strict):
    """`PUT /v1/cron`: the Workers whose cron triggers this location runs, for the next
    `ttlSeconds` (counted on the agent's own clock); each PUT replaces the last."""

    ttl_seconds: float = Field(alias="ttlSeconds", gt=0, le=MAX_CRON_LEASE)
    # Who grants it (one operator process) and its order: a lease that reaches the agent
    # after a later one of the same holder (it waited in a frozen agent's socket) is stale.
    holder: str = Field(default="", max_length=64)
    seq: int = Field(default=0, ge=0)
    schedules: dict[Annotated[str, Field(pattern=WORKER_NAME_RE, max_length=127)],
                    tuple[CronText, ...]] = Field(default_factory=dict, max_length=100_000)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        for worker, texts in self.schedules.items():
            if not 1 <= len(texts) <= crons.MAX_CRONS:
                raise ValueError(f"schedules.{worker}: 1 to {crons.MAX_CRONS} expressions")
        return self


@dataclass(frozen=True)
class CronRun:
    """A location's last cron run of a Worker (inventory `cron`)."""

    cron: str
    scheduled_time: str  # RFC 3339
    outcome: str
    attempts: int


def _cron_run(raw: object) -> CronRun | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return CronRun(str(raw["cron"]), str(raw["scheduledTime"]), str(raw["outcome"]),
                       int(raw.get("attempts", 1)))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, order=True)
class MissingService:
    """A service binding of the primary version whose Worker is not at the location."""

    binding: str  # the binding's name, e.g. "API"
    worker: str  # "<namespace>.<worker>" it calls


@dataclass(frozen=True)
class InventoryItem:
    """One Worker in a location's inventory."""

    worker: str
    identity: str
    primary: str
    state: str
    message: str
    # version -> why the location refuses to run it (it hung its cell repeatedly); the
    # location answers 502 for these versions
    quarantined: Mapping[str, str] = field(default_factory=dict)
    missing_services: tuple[MissingService, ...] = ()
    cron: CronRun | None = None  # the last cron run of the Worker here


def inventory_item(raw: Mapping[str, Any]) -> InventoryItem:
    """An item of `GET /v1/workers`. Agents older than quarantine and service checks send
    neither "quarantined" nor "missingServices": absent (or of another shape) is none."""
    return InventoryItem(
        worker=raw["worker"],
        identity=raw.get("identity", ""),
        primary=raw.get("primary", ""),
        state=raw.get("state", ""),
        message=raw.get("message", ""),
        quarantined=_quarantined(raw.get("quarantined")),
        missing_services=_missing_services(raw.get("missingServices")),
        cron=_cron_run(raw.get("cron")),
    )


@dataclass(frozen=True)
class InventoryChanges:
    """An answer to `GET /v1/workers?since=<cursor>`: the items changed since the cursor and
    the Workers gone since (or, `complete`, every item), and the cursor to ask with next."""

    items: dict[str, InventoryItem]
    removed: tuple[str, ...] = ()
    cursor: str = ""
    complete: bool = True


def inventory_changes(raw: object) -> InventoryChanges:
    """An agent older than cursors ignores `since` and sends every item (a list, or
    {"workers": [...]}) and no cursor: complete, and asked in full again next time."""
    body = raw if isinstance(raw, Mapping) else {"workers": raw}
    items = {str(i["worker"]): inventory_item(i) for i in body.get("workers") or []}
    cursor = body.get("cursor")
    if not isinstance(cursor, str) or not cursor:
        return InventoryChanges(items)
    removed = tuple(str(w) for w in body.get("removed") or [] if str(w) not in items)
    return InventoryChanges(items, removed, cursor, body.get("complete") is not False)


def _quarantined(raw: object) -> dict[str, str]:
    """{"<version>": "<reason>"}; a version without a text reason is quarantined all the
    same, with no reason to tell."""
    if not isinstance(raw, Mapping):
        return {}
    return {str(v): why if isinstance(why, str) else "" for v, why in raw.items() if v}


def _missing_services(raw: object) -> tuple[MissingService, ...]:
    """[{"binding", "worker"}, ...], each once, sorted; entries without both names are
    left out."""
    if not isinstance(raw, list):
        return ()
    found = {
        MissingService(m["binding"], m["worker"])
        for m in raw
        if isinstance(m, Mapping)
        and isinstance(m.get("binding"), str)
        and isinstance(m.get("worker"), str)
        and m["binding"]
        and m["worker"]
    }
    return tuple(sorted(found))


def secrets_of(deployments: Iterable[Deployment]) -> set[str]:
    return {secret for d in deployments for b in d.versions for secret in b.secrets()}


def redact(message: str, secrets: Iterable[str]) -> str:
    """Secret values never leave the process in a message (status, Events, logs, answers),
    whatever a Worker or workerd echoed: each value, also without surrounding whitespace,
    longest first so a secret containing another is removed whole."""
    values = {v for s in secrets for v in (s, s.strip()) if v}
    for v in sorted(values, key=len, reverse=True):
        message = message.replace(v, "[redacted]")
    return message


SIGNATURE_HEADER = "Edgeplane-Signature"
OVERRIDES_HEADER = "Edgeplane-Version-Overrides"
VERSION_KEY_HEADER = "Edgeplane-Version-Key"
MIN_SIGNING_KEY = 32  # characters


def sign(key: str, now: int, proto: str = "", overrides: str = "", version_key: str = "") -> str:
    """The Edgeplane-Signature value that makes a location's router honour these
    X-Forwarded-Proto, Edgeplane-Version-Overrides and Edgeplane-Version-Key values (""
    when a header is not sent) for five minutes around `now` (unix seconds). The router's
    `signedText` and `verified` check it the same way."""
    text = f"{now}\n{proto}\n{overrides}\n{version_key}"
    digest = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return f"t={now},v={digest}"


def signed_headers(
    key: str,
    now: int,
    *,
    proto: str | None = None,
    overrides: str | None = None,
    version_key: str | None = None,
) -> dict[str, str]:
    """The headers to send, signature included."""
    headers = {
        name: value
        for name, value in (
            ("X-Forwarded-Proto", proto),
            (OVERRIDES_HEADER, overrides),
            (VERSION_KEY_HEADER, version_key),
        )
        if value is not None
    }
    headers[SIGNATURE_HEADER] = sign(key, now, proto or "", overrides or "", version_key or "")
    return headers


def key_fingerprint(key: str) -> str:
    """Names a signing key without giving it away: the operator compares fingerprints."""
    return hashlib.sha256(b"edgeplane-signing-key\0" + key.encode()).hexdigest()[:16]


def secret_digest(key: str, value: str) -> str:
    """How a secret value enters a version id: an HMAC with the cluster's key (derived from
    the signing key: `derive_key`), or, with no key, a bare sha256 that a guess of a short
    secret can be checked against; the operator warns when it runs without a key."""
    if key:
        return "hmac-sha256:" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def derive_key(key: str, purpose: str) -> str:
    """A key for one purpose from the cluster's key, so one Secret serves several."""
    if not key:
        return ""
    return hmac.new(key.encode(), f"edgeplane:{purpose}".encode(), hashlib.sha256).hexdigest()
