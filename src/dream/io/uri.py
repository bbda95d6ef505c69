"""Sources and sinks from URIs (what `dream run SOURCE SINK` and `dream estimate SOURCE` take).

Source URIs (`source_from_uri`):

    ./episodes, /data/episodes, file:///data/episodes
                                    a local folder: frames_from_dir (frame_glob, actions_glob);
                                    a folder holding meta/info.json is read as LeRobot
    s3://bucket/prefix              frames_from_s3 (frame_glob, actions_glob, id_pattern,
                                    boto3_kwargs, prefetch)
    hf://datasets/org/name          frames_from_hf (frame_field and actions_field required;
    hf://datasets/org/name@rev      split, id_field, token, endpoint); `@rev` sets revision
    hf+parquet:///data/train-*.parquet
                                    frames_from_hf on local Parquet file(s) (a path or glob)
    lerobot://org/name              frames_from_lerobot on a Hub repo (camera, horizon,
    lerobot://org/name@rev          stride, chunk_size, action_dim, episodes, token, …)
    lerobot:///abs/path, lerobot:./rel/path
                                    frames_from_lerobot on a local dataset folder

Sink URIs (`sink_from_uri`):

    ./out, /data/out, file:///data/out   RolloutSink.dir (videos_subdir, metadata_filename)
    s3://bucket/prefix                   RolloutSink.s3 (boto3_kwargs, videos_subdir, …)
    hf://datasets/org/name               RolloutSink.hf (token, private, shard_rows, license,
                                         pretty_name, endpoint)
    lerobot:./rel/path, lerobot:///abs/path
                                         RolloutSink.lerobot (repo_id required; fps, task,
                                         camera_key, push_to_hub, private, token, …)

Options are passed to the factory as keyword arguments; options whose value is None are
dropped (so a CLI can pass every flag it has). Text values (from `--source-opt k=v` or the
URI's query string) are converted by the type the factory's parameter declares: int,
float, bool (true/false, 1/0, yes/no, on/off), comma-separated int lists, JSON objects.
An option the factory does not take, a required one that is missing, or a value that
does not convert raises ValueError naming the option and the valid ones. Options may ride
in the query, e.g. `hf://datasets/org/name?frame_field=image&actions_field=action` or
`lerobot://org/name?horizon=48&stride=12` (keyword arguments win over the query).
Anything else raises ValueError listing the accepted forms.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from dream.io.types import IterableSource, RolloutSink

__all__ = ["SINK_FORMS", "SOURCE_FORMS", "sink_from_uri", "source_from_uri"]

SOURCE_FORMS = (
    "./dir | /abs/dir | file:///abs/dir",
    "s3://bucket/prefix",
    "hf://datasets/org/name[@revision]",
    "hf+parquet:///path/to/*.parquet",
    "lerobot://org/name[@revision] | lerobot:///abs/path | lerobot:./rel/path",
)
SINK_FORMS = (
    "./dir | /abs/dir | file:///abs/dir",
    "s3://bucket/prefix",
    "hf://datasets/org/name",
    "lerobot:./rel/path | lerobot:///abs/path",
)


def _split_query(uri: str, options: dict[str, Any]) -> str:
    """Move `?k=v&…` options of `uri` into `options` (explicit options win); return the bare URI."""
    if "?" not in uri:
        return uri
    from urllib.parse import parse_qsl

    bare, _, query = uri.partition("?")
    for key, value in parse_qsl(query, keep_blank_values=True):
        options.setdefault(key, value)  # converted by the factory's signature in _call
    return bare


def _call(factory: Callable[..., Any], what: str, *args: Any, **options: Any) -> Any:
    options = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    positional = set(list(params)[: len(args)])  # filled by the URI itself
    known = sorted(
        k for k, p in params.items()
        if k not in positional and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    unknown = sorted(k for k in options if k not in params and not accepts_any)
    if unknown:
        raise ValueError(f"{what} does not take option(s) {', '.join(unknown)}; valid options: {', '.join(known)}")
    missing = [
        k for k, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty and k not in options
    ]
    if missing:
        raise ValueError(
            f"{what} needs option(s) {', '.join(missing)} (pass KEY=VALUE options, e.g. --source-opt "
            f"{missing[0]}=…, or ?{missing[0]}=… in the URI)"
        )
    for key, value in list(options.items()):
        if key in params:
            options[key] = convert_option(key, value, params[key].annotation, what)
    return factory(*args, **options)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _alternatives(annotation: Any) -> set[str]:
    """The top-level alternatives of a (string) annotation: "int | None" -> {"int", "None"}."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace(" ", "").replace("typing.", "")
    out, depth, part = set(), 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            out.add(part)
            part = ""
        else:
            part += ch
    out.add(part)
    return out - {"None", ""}


def convert_option(key: str, value: Any, annotation: Any, what: str) -> Any:
    """A text option (CLI `--source-opt k=v`, a URI query) as the type its parameter declares.

    Values that are not str pass through; so does text for a parameter that takes str.
    Raises ValueError naming the option and the type expected.
    """
    if not isinstance(value, str) or annotation is inspect.Parameter.empty:
        return value
    alts = _alternatives(annotation)
    if not alts or alts & {"str", "Any", "Path", "str|Path"} or any(a.startswith(("str", "Path")) for a in alts):
        return value
    text = value.strip()
    try:
        if "bool" in alts:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if "int" in alts:
            return int(text)
        if "float" in alts:
            return float(text)
        if any(a.split("[")[0] in ("list", "tuple", "Sequence", "Iterable", "Collection") for a in alts):
            return [int(v) for v in text.split(",") if v.strip()]
        if any(a.split("[")[0] in ("dict", "Mapping") for a in alts):
            import json

            parsed = json.loads(text)
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
    except ValueError:
        expected = " | ".join(sorted(alts))
        raise ValueError(f"{what} option {key}={value!r}: expected {expected}") from None
    return value


def _split_revision(name: str) -> tuple[str, str | None]:
    if "@" in name:
        repo, _, revision = name.partition("@")
        return repo, unquote(revision) or None
    return name, None


def _hf_dataset_id(uri: str) -> tuple[str, str | None]:
    rest = uri[len("hf://") :]
    if not rest.startswith("datasets/"):
        raise ValueError(f"{uri!r}: only Hugging Face dataset repos are supported (hf://datasets/org/name)")
    repo, revision = _split_revision(rest[len("datasets/") :].strip("/"))
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{uri!r}: expected hf://datasets/org/name")
    return repo, revision


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(unquote(uri[len("file://") :]))
    if "://" in uri:
        return None
    return Path(uri).expanduser()


def _bad(uri: str, forms: tuple[str, ...], what: str) -> ValueError:
    return ValueError(f"unsupported {what} URI {uri!r}; use one of: " + "; ".join(forms))


def source_from_uri(uri: str, **options: Any) -> IterableSource:
    """The source a URI names (forms in the module docstring); `options` go to its factory."""
    if not isinstance(uri, str) or not uri:
        raise _bad(str(uri), SOURCE_FORMS, "source")
    uri = _split_query(uri, options)
    if uri.startswith("s3://"):
        from dream.io.sources.s3 import frames_from_s3

        return _call(frames_from_s3, "frames_from_s3", uri, **options)
    if uri.startswith("hf://"):
        from dream.io.sources.hf import frames_from_hf

        repo, revision = _hf_dataset_id(uri)
        options.setdefault("revision", revision)
        return _call(frames_from_hf, "frames_from_hf", repo, **options)
    if uri.startswith("hf+parquet://"):
        from dream.io.sources.hf import frames_from_hf

        return _call(frames_from_hf, "frames_from_hf", unquote(uri[len("hf+parquet://") :]), **options)
    if uri.startswith("lerobot:"):
        from dream.io.sources.lerobot import frames_from_lerobot

        rest = uri[len("lerobot:") :]
        if rest.startswith("///"):
            target, revision = unquote(rest[2:]), None  # lerobot:///abs/path
        elif rest.startswith("//"):
            target, revision = _split_revision(rest[2:].strip("/"))  # lerobot://org/name[@rev]
        else:
            target, revision = unquote(rest), None  # lerobot:./rel/path
        if not target:
            raise _bad(uri, SOURCE_FORMS, "source")
        options.setdefault("revision", revision)
        return _call(frames_from_lerobot, "frames_from_lerobot", target, **options)
    path = _local_path(uri)
    if path is None:
        raise _bad(uri, SOURCE_FORMS, "source")
    if (path / "meta" / "info.json").is_file():
        from dream.io.sources.lerobot import frames_from_lerobot

        return _call(frames_from_lerobot, "frames_from_lerobot", str(path), **options)
    from dream.io.sources.dir import frames_from_dir

    return _call(frames_from_dir, "frames_from_dir", path, **options)


def sink_from_uri(uri: str, **options: Any) -> RolloutSink:
    """The sink a URI names (forms in the module docstring); `options` go to its factory."""
    if not isinstance(uri, str) or not uri:
        raise _bad(str(uri), SINK_FORMS, "sink")
    uri = _split_query(uri, options)
    if uri.startswith("s3://"):
        from dream.io.sinks.s3 import S3RolloutSink

        return _call(S3RolloutSink, "RolloutSink.s3", uri, **options)
    if uri.startswith("hf://"):
        from dream.io.sinks.hf import HfRolloutSink

        repo, revision = _hf_dataset_id(uri)
        if revision is not None:
            options.setdefault("revision", revision)
        return _call(HfRolloutSink, "RolloutSink.hf", repo, **options)
    if uri.startswith("lerobot:"):
        from dream.io.sinks.lerobot import LeRobotRolloutSink

        rest = uri[len("lerobot:") :]
        if rest.startswith("///"):
            target = unquote(rest[2:])
        elif rest.startswith("//"):
            raise ValueError(
                f"{uri!r}: a LeRobot sink is a local folder (lerobot:./path or lerobot:///abs/path); to upload "
                "it, add --sink-opt push_to_hub=true with repo_id=org/name"
            )
        else:
            target = unquote(rest)
        if not target:
            raise _bad(uri, SINK_FORMS, "sink")
        return _call(LeRobotRolloutSink, "RolloutSink.lerobot", target, **options)
    path = _local_path(uri)
    if path is None:
        raise _bad(uri, SINK_FORMS, "sink")
    from dream.io.sinks.dir import DirRolloutSink

    return _call(DirRolloutSink, "RolloutSink.dir", path, **options)
