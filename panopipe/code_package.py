"""``panopipe package-app``: build the code package's asset the way Panorama expects, and register it.

The code package's asset is the application's container filesystem: the arm64 image built from
``panorama_app/Dockerfile``, exported with ``docker export`` of a created container, gzipped and
named by its sha256. Building it is the one part that needs Docker, so it sits behind one small
interface (:class:`ContainerBuilder`): :class:`DockerBuilder` runs the docker CLI;
:class:`LocalBuilder`, for the local AWS (which needs no Docker), writes the files the Dockerfile
copies at the paths it copies them to, marked as a local build. Registration is the model
package's own (:func:`lambda_handlers.package_versions.register_version`: one implementation, two
callers), followed by the same wait and the same trimming of old patch versions.

Three ways in (the CLI): build and register; build only, into a folder with ``code-asset.json``
(optionally through an S3 cache keyed by the hash of what goes into the image, which is how the
delivery pipeline rebuilds only when ``panorama_app/`` changed); register a folder built before.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlparse

from panopipe import exit_codes
from panopipe.runs import RunError, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from lambda_handlers.package_versions import Registration
    from lambda_handlers.state import PackageRef
    from panopipe.config import EnvironmentConfig
    from panorama_app.manifest.spec import ApplicationSpec

#: The Dockerfile, relative to the build context (the project root: it copies ``panorama_app/...``).
DOCKERFILE = Path("panorama_app") / "Dockerfile"
#: What ``--build-only`` writes next to the asset, and ``--asset`` reads.
ASSET_INFO = "code-asset.json"
#: The member that marks a tarball made without Docker (not a container image: nothing runs it).
LOCAL_MARKER = ".panopipe-local-build"
PLATFORM = "linux/arm64"
IMAGE_TAG = "panopipe-code-asset:build"
Kind = Literal["container", "local"]

_DOCKER_NEEDS = (
    "building the code package needs Docker with buildx and arm64 emulation (QEMU binfmt: "
    "docker run --privileged --rm tonistiigi/binfmt --install arm64), or the delivery pipeline's "
    "CodeBuild step, which builds it on an ARM64 image"
)


# --- what goes into the image -----------------------------------------------------------------------


def image_files(context: Path) -> list[tuple[str, str]]:
    """(source relative to ``context``, absolute path in the image) of every file the Dockerfile copies.

    Read from its ``COPY`` instructions (continued lines joined), so the local build and the source
    hash follow the Dockerfile and never a second list.
    """
    text = (context / DOCKERFILE).read_text().replace("\\\n", " ")
    files: list[tuple[str, str]] = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "COPY":
            continue
        arguments = [w for w in words[1:] if not w.startswith("--")]
        *sources, target = arguments
        into_folder = target.endswith("/") or len(sources) > 1
        for source in sources:
            files.append((source, f"{target.rstrip('/')}/{Path(source).name}" if into_folder else target))
    return files


def source_sha256(context: Path) -> str:
    """The hash of what goes into the image: the Dockerfile and every file it copies (sorted paths + contents)."""
    digest = hashlib.sha256()
    for relative in sorted({DOCKERFILE.as_posix(), *(source for source, _ in image_files(context))}):
        content = (context / relative).read_bytes()
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# --- builders -----------------------------------------------------------------------------------------


class ContainerBuilder(Protocol):
    """Builds the code asset (``<sha256>.tar.gz`` in ``out_dir``) from the project at ``context``."""

    kind: Kind

    def build_asset(self, context: Path, out_dir: Path) -> Path:
        """Build, export and gzip; return the asset's path, named by its sha256."""
        ...


def gzip_named(source: Path, out_dir: Path) -> Path:
    """Gzip ``source`` deterministically (no name, mtime 0) into ``out_dir/<sha256>.tar.gz``; remove ``source``."""
    partial = out_dir / ".code-asset.tar.gz.partial"
    with (
        source.open("rb") as raw,
        partial.open("wb") as target,
        gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0) as compressed,
    ):
        shutil.copyfileobj(raw, compressed, 8 * 1024 * 1024)
    source.unlink()
    from lambda_handlers.package_versions import sha256_of_file

    return partial.replace(out_dir / f"{sha256_of_file(partial)}.tar.gz")


class CommandFailed(Exception):
    """A command of the docker CLI exited non-zero (``output``: what it wrote to stderr, if captured)."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str = "") -> None:
        super().__init__(f"{shlex.join(argv)} exited {returncode}" + (f": {output.strip()[-500:]}" if output else ""))
        self.argv, self.returncode, self.output = list(argv), returncode, output


#: Runs a command: (argv, capture) → its stdout when captured ("" otherwise); raises CommandFailed.
Runner = Callable[[Sequence[str], bool], str]


def run_command(argv: Sequence[str], capture: bool = True) -> str:
    """The real :data:`Runner`: without ``capture`` the command's progress goes to the terminal."""
    try:
        result = subprocess.run(list(argv), capture_output=capture, text=True, check=False)
    except OSError as error:
        raise CommandFailed(argv, 127, str(error)) from None
    if result.returncode != 0:
        raise CommandFailed(argv, result.returncode, result.stderr or "")
    return result.stdout or ""


class DockerBuilder:
    """The asset as Panorama expects it: the arm64 image's exported filesystem, through the docker CLI."""

    kind: Kind = "container"

    def __init__(
        self, runner: Runner = run_command, which: Callable[[str], str | None] = shutil.which, tag: str = IMAGE_TAG
    ) -> None:
        self.runner, self.which, self.tag = runner, which, tag

    def check(self) -> str:
        """The docker CLI's path, once Docker, buildx and arm64 builds are known to work; else a RunError."""
        docker = self.which("docker")
        if docker is None:
            raise RunError(f"no docker command on PATH: {_DOCKER_NEEDS}", exit_codes.USAGE)
        for argv, missing in (
            ([docker, "info", "--format", "{{.ServerVersion}}"], "the Docker daemon is not reachable"),
            ([docker, "buildx", "version"], "docker buildx is not installed"),
        ):
            try:
                self.runner(argv, True)
            except CommandFailed as error:
                raise RunError(f"{missing} ({error}): {_DOCKER_NEEDS}", exit_codes.USAGE) from None
        try:
            builder = self.runner([docker, "buildx", "inspect", "--bootstrap"], True)
        except CommandFailed as error:
            raise RunError(
                f"docker buildx has no usable builder ({error}): {_DOCKER_NEEDS}", exit_codes.USAGE
            ) from None
        if PLATFORM not in builder:
            raise RunError(f"the buildx builder cannot build {PLATFORM}: {_DOCKER_NEEDS}", exit_codes.USAGE)
        return docker

    def build_asset(self, context: Path, out_dir: Path) -> Path:
        """``buildx build --load``, ``create``, ``export``, gzip, ``rm``."""
        docker = self.check()
        build = [docker, "buildx", "build", "--platform", PLATFORM, "-f", str(context / DOCKERFILE)]
        self._run([*build, "-t", self.tag, "--load", str(context)], capture=False)
        from panorama_app.manifest.spec import CODE_ENTRY

        container = self._run([docker, "create", "--platform", PLATFORM, self.tag, "python3", CODE_ENTRY]).strip()
        exported = out_dir / ".code-asset.tar.partial"
        try:
            self._run([docker, "export", "-o", str(exported), container])
        finally:
            with contextlib.suppress(CommandFailed):  # a leftover stopped container is harmless
                self.runner([docker, "rm", container], True)
        return gzip_named(exported, out_dir)

    def _run(self, argv: list[str], capture: bool = True) -> str:
        try:
            return self.runner(argv, capture)
        except CommandFailed as error:
            shown = "" if capture else " (its output is above)"
            raise RunError(f"{error}{shown}", exit_codes.USAGE) from None


class LocalBuilder:
    """For the local AWS, which runs nothing: the application's files at their image paths, no Docker.

    A deterministic gzipped tar (sorted members, mtime 0, root-owned, fixed modes), so the same
    sources give the same sha256, holding what the Dockerfile copies where it copies it
    (``panorama/app.py`` is the code descriptor's entry) and :data:`LOCAL_MARKER`.
    """

    kind: Kind = "local"

    def build_asset(self, context: Path, out_dir: Path) -> Path:
        """Write the tarball; return its path, named by its sha256."""
        files = {target.lstrip("/"): (context / source).read_bytes() for source, target in image_files(context)}
        note = {
            "built_by": "panopipe package-app without Docker, for the local AWS",
            "source_sha256": source_sha256(context),
            "runs": "nothing: it is not a container image (build with Docker for an appliance)",
        }
        files[LOCAL_MARKER] = (json.dumps(note, sort_keys=True, indent=1) + "\n").encode()
        folders = {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}
        raw = out_dir / ".code-asset.tar.partial"
        with tarfile.open(raw, "w", format=tarfile.USTAR_FORMAT) as archive:
            for name in sorted(folders | set(files)):
                member = tarfile.TarInfo(name)
                member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "root", "root"
                if name in files:
                    member.size, member.mode = len(files[name]), 0o644
                    archive.addfile(member, io.BytesIO(files[name]))
                else:
                    member.type, member.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(member)
        return gzip_named(raw, out_dir)


# --- built assets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltAsset:
    """A built code asset in a folder, as ``code-asset.json`` describes it."""

    folder: Path
    asset: str  # <sha256>.tar.gz
    sha256: str
    source_sha256: str
    kind: Kind

    @property
    def path(self) -> Path:
        """The asset file."""
        return self.folder / self.asset

    def info(self) -> dict[str, str]:
        """The ``code-asset.json`` document."""
        document = asdict(self)
        del document["folder"]
        return document

    def write_info(self) -> None:
        """Write ``code-asset.json`` next to the asset."""
        (self.folder / ASSET_INFO).write_text(json.dumps(self.info(), sort_keys=True, indent=1) + "\n")


def build(builder: ContainerBuilder, context: Path, out_dir: Path) -> BuiltAsset:
    """Build the asset into ``out_dir`` and describe it there (``code-asset.json``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = source_sha256(context)
    path = builder.build_asset(context, out_dir)
    built = BuiltAsset(out_dir, path.name, path.name.removesuffix(".tar.gz"), source, builder.kind)
    built.write_info()
    return built


def read_asset(folder: Path) -> BuiltAsset:
    """The asset a ``--build-only`` run left in ``folder``, checked (its sha256 is its name and its content)."""
    info_path = folder / ASSET_INFO
    if not folder.is_dir():
        raise RunError(f"--asset {folder}: no such folder", exit_codes.USAGE)
    if not info_path.is_file():
        raise RunError(
            f"--asset {folder}: no {ASSET_INFO} there (make one with panopipe package-app --build-only --output DIR)",
            exit_codes.USAGE,
        )
    try:
        info: Any = json.loads(info_path.read_text())
        built = BuiltAsset(folder, str(info["asset"]), str(info["sha256"]), str(info["source_sha256"]), info["kind"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"{info_path}: not a {ASSET_INFO} of panopipe package-app ({error!r})", exit_codes.USAGE
        ) from None
    if built.kind not in ("container", "local") or built.asset != f"{built.sha256}.tar.gz":
        raise RunError(f"{info_path}: kind must be container or local, asset <sha256>.tar.gz", exit_codes.USAGE)
    if not built.path.is_file():
        raise RunError(f"--asset {folder}: {built.asset}, named in {ASSET_INFO}, is missing", exit_codes.USAGE)
    from lambda_handlers.package_versions import sha256_of_file

    actual = sha256_of_file(built.path)
    if actual != built.sha256:
        raise RunError(f"--asset {folder}: {built.asset} has sha256 {actual}: not the file built", exit_codes.USAGE)
    return built


# --- the build cache ------------------------------------------------------------------------------------


def parse_cache(uri: str) -> tuple[str, str]:
    """Bucket and key prefix (ending in ``/``, or empty) of ``s3://bucket/prefix/``; RunError if it is none."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise RunError(f"--cache {uri!r}: must be an S3 location, s3://<bucket>/<prefix>/", exit_codes.USAGE)
    prefix = parsed.path.lstrip("/")
    return parsed.netloc, prefix if not prefix or prefix.endswith("/") else f"{prefix}/"


def build_cached(
    builder: ContainerBuilder, context: Path, out_dir: Path, cache: str, say: Callable[[str], None]
) -> BuiltAsset:
    """Reuse the asset stored under ``<cache>/<source sha256>/`` if it is there (and of this builder's kind).

    Otherwise build it and store it there (the asset first, ``code-asset.json`` last, as the marker).
    """
    import boto3
    from botocore.exceptions import ClientError

    from lambda_handlers.aws.client_errors import S3_NOT_FOUND, error_code

    bucket, prefix = parse_cache(cache)
    source = source_sha256(context)
    folder = f"{prefix}{source}/"
    out_dir.mkdir(parents=True, exist_ok=True)
    with aws_errors(f"reading the build cache s3://{bucket}/{folder}"):
        s3 = boto3.client("s3")
        try:
            cached: Any = json.loads(s3.get_object(Bucket=bucket, Key=f"{folder}{ASSET_INFO}")["Body"].read())
        except ClientError as error:
            if error_code(error) not in S3_NOT_FOUND:
                raise
            cached = None
        if isinstance(cached, dict) and cached.get("kind") == builder.kind and cached.get("asset"):
            s3.download_file(bucket, f"{folder}{cached['asset']}", str(out_dir / str(cached["asset"])))
            (out_dir / ASSET_INFO).write_text(json.dumps(cached, sort_keys=True, indent=1) + "\n")
            built = read_asset(out_dir)
            say(f"panorama_app/ unchanged (source {source[:12]}): reusing the asset built before")
            return built
    built = build(builder, context, out_dir)
    with aws_errors(f"storing the asset in the build cache s3://{bucket}/{folder}"):
        s3.upload_file(str(built.path), bucket, f"{folder}{built.asset}")
        s3.upload_file(str(out_dir / ASSET_INFO), bucket, f"{folder}{ASSET_INFO}")
    say(f"built {built.asset} (source {source[:12]}) and stored it in s3://{bucket}/{folder}")
    return built


# --- registration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """What ``package-app`` registered: the patch version, its final status, what was trimmed."""

    registration: Registration
    status: str
    reused: bool
    deregistered: list[str]
    trim_note: str | None = None


def register(
    config: EnvironmentConfig,
    built: BuiltAsset,
    *,
    say: Callable[[str], None],
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Registered:
    """Register ``built`` as the code package of ``config``'s environment, wait for it, trim old patches.

    The clients are made here, inside the caller's endpoint and role; a patch version registered
    before (same asset, same application) is not uploaded again.
    """
    import boto3

    from lambda_handlers.aws import panorama
    from panopipe.config.panorama_spec import application_spec

    spec = application_spec(config)
    with aws_errors(f"registering the code package {spec.code_package}"):
        s3 = boto3.client("s3", region_name=config.region)
        panorama.use_client(panorama.new_client(config.region or s3.meta.region_name))
        try:
            registration = register_code_asset(s3, spec, built.path, reuse=True)
            reused = registration.found is not None
            if reused:
                patch = registration.patch_version[:12]
                say(f"patch {patch} is registered already ({registration.found}): nothing uploaded")
            else:
                say(f"uploaded {built.asset} and registered patch {registration.patch_version[:12]}")
            status = wait_registered(
                registration.ref(), config.runs.registration_timeout_seconds, poll_seconds, sleep=sleep, clock=clock
            )
            deregistered, note = _trim(s3, config, registration.ref())
        finally:
            panorama.use_client(None)
    return Registered(registration, status, reused, deregistered, note)


def register_code_asset(s3: S3Client, spec: ApplicationSpec, asset: Path, *, reuse: bool = False) -> Registration:
    """Upload ``asset`` as the code package's container asset with its descriptor and package.json; register.

    The shared registration (:func:`lambda_handlers.package_versions.register_version`) with the code
    package's documents; ``reuse`` returns a patch registered before without uploading.
    """
    from lambda_handlers import package_versions
    from panorama_app.manifest import documents

    return package_versions.register_version(
        s3,
        spec.code_package,
        spec.package_version,
        package_versions.file_asset(asset),
        documents.code_descriptor(),
        lambda asset_sha, descriptor_sha: documents.code_package(spec, asset_sha, descriptor_sha),
        reuse=reuse,
    )


def wait_registered(
    ref: PackageRef,
    timeout: float,
    poll_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll DescribePackageVersion until REGISTER_COMPLETED; FAILED or ``timeout`` seconds → RunError (exit 1)."""
    from lambda_handlers.errors import PackageRegistrationFailed
    from lambda_handlers.package_versions import REGISTER_COMPLETED, registration_status

    deadline = clock() + timeout
    while True:
        try:
            status = registration_status(ref)
        except PackageRegistrationFailed as error:
            raise RunError(f"registration FAILED: {error}", exit_codes.RUN_FAILED) from None
        if status == REGISTER_COMPLETED:
            return status
        if status != "REGISTER_PENDING" or clock() > deadline:
            what = f"package {ref['package_name']} {ref['package_version']} patch {ref['patch_version']}"
            raise RunError(f"{what}: still {status} after {timeout:.0f} s", exit_codes.RUN_FAILED)
        sleep(poll_seconds)


def _trim(s3: S3Client, config: EnvironmentConfig, ref: PackageRef) -> tuple[list[str], str | None]:
    """Record the patch in the package's history and deregister beyond ``runs.keep_package_versions``.

    The history and the last-good manifests live in the environment's artifacts bucket; before the
    storage stack is deployed there is none, and nothing is trimmed (said in the returned note).
    """
    import boto3
    from botocore.exceptions import ClientError

    from lambda_handlers import package_versions
    from lambda_handlers.aws.client_errors import S3_NO_BUCKET, error_code
    from panopipe.naming import bucket_name

    account = config.account or boto3.client("sts", region_name=config.region).get_caller_identity()["Account"]
    bucket = bucket_name(config.project, config.environment, "artifacts", account, s3.meta.region_name)
    devices = [device.id or device.name or "?" for device in config.devices]
    try:
        removed = package_versions.record_and_trim(s3, bucket, ref, config.runs.keep_package_versions, devices)
    except ClientError as error:
        if error_code(error) not in S3_NO_BUCKET:
            raise
        return [], f"old patch versions not trimmed: no artifacts bucket {bucket} yet (deploy the stacks)"
    return removed, None
