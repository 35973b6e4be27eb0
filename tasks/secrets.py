"""Credentials in storage options: held as pydantic ``SecretStr`` from the moment they are validated.

``storage_options`` is a flow parameter, and Prefect stores flow-run parameters (``jsonable_encoder``,
which writes a ``SecretStr`` as ``**********``) and shows them in the UI; s2s writes its config into
run folders. Wrapping the secret values at validation keeps them out of all of that: every
``model_dump(mode="json")`` (whose serializer masks secret-named values even where validation was
skipped), ``repr`` and log line shows the mask, and only ``Store`` and the other fsspec boundaries
(``s2s_core.storage.reveal``) see the values.

An option is secret when its name says so (``is_secret_name``: key, secret, token, password, session
tokens, ... at any depth, e.g. ``client_kwargs.aws_secret_access_key``) or the user marks it with the
``secret:`` prefix (``secret:api_key``; the prefix is dropped). ``secret_block: NAME`` names a Prefect
``Secret`` block holding a JSON object of options (every value secret), merged under the given ones:
what a deployment names instead of spelling the credentials out in its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, SecretStr, TypeAdapter

SECRET_PREFIX = "secret:"
SECRET_BLOCK = "secret_block"
MASK = "**********"  # what pydantic (and so Prefect) writes for a SecretStr
# Any name containing one of these is secret: aws_secret_access_key, client_secret, session_token,
# aws_session_token, sas_token, aws_access_key_id, account_key, connection_string, credentials, ...
_SECRET_PARTS = ("secret", "password", "passwd", "token", "credential", "access_key", "connection_string")


def is_secret_name(name: str) -> bool:
    """Whether a storage option of this name holds a credential (fsspec, s3fs, gcsfs, adlfs names)."""
    name = name.lower().removeprefix(SECRET_PREFIX)
    return name == "key" or name.endswith("_key") or any(part in name for part in _SECRET_PARTS)


def hide_secrets(options: Mapping[str, Any], secret: bool = False) -> dict[str, Any]:
    """``options`` with every secret value (see the module docstring) wrapped in ``SecretStr``.

    Values already wrapped stay as they are, so validating a validated config again is harmless.
    The mask itself is refused as a value: it is what a JSON dump wrote in place of the secret, and
    using it would fail later as bad credentials, far from the cause.
    """
    hidden: dict[str, Any] = {}
    for raw_key, value in options.items():
        key = str(raw_key)
        marked = key.startswith(SECRET_PREFIX)
        name = key.removeprefix(SECRET_PREFIX) if marked else key
        if name in hidden:
            raise ValueError(f"storage option {name!r} is given twice (once as {SECRET_PREFIX}{name})")
        hidden[name] = _hide(value, secret or marked or is_secret_name(name), name)
    return hidden


def _hide(value: Any, secret: bool, name: str) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, Mapping):
        return hide_secrets(value, secret)
    if isinstance(value, list | tuple):
        return [_hide(item, secret, name) for item in value]
    # Strings and numbers (a YAML password of digits is an int); booleans and None are settings
    # (gcsfs's token=None means "find the credentials"), not credentials.
    if not secret or isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    if value == MASK:
        raise ValueError(f"storage option {name!r} is the mask {MASK!r}, not a credential (a dumped "
                         "config or stored run parameters hold the mask): give the real value")
    return SecretStr(str(value))


def mask_secrets(options: Mapping[str, Any], secret: bool = False) -> dict[str, Any]:
    """``options`` with every secret value replaced by the mask, wrapped or not: how a ``StorageOptions``
    field is dumped as JSON, so options that skipped validation (``model_copy(update=...)``) are masked
    in config files and Prefect's parameters all the same."""
    masked: dict[str, Any] = {}
    for raw_key, value in options.items():
        key = str(raw_key)
        marked = key.startswith(SECRET_PREFIX)
        name = key.removeprefix(SECRET_PREFIX) if marked else key
        masked[name] = _mask(value, secret or marked or is_secret_name(name))
    return masked


def _mask(value: Any, secret: bool) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""  # as pydantic dumps one
    if isinstance(value, Mapping):
        return mask_secrets(value, secret)
    if isinstance(value, list | tuple):
        return [_mask(item, secret) for item in value]
    if secret and not isinstance(value, bool) and isinstance(value, str | int | float):
        return MASK
    return value


def _dump(options: dict[str, Any]) -> dict[str, Any]:
    return mask_secrets(options)


def load_secret_block(name: str) -> dict[str, Any]:
    """The storage options a Prefect ``Secret`` block holds (a JSON object), all of them secret."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as err:  # Prefect's answer for a block that does not exist
        raise ValueError(f"Prefect Secret block {name!r} cannot be loaded: {err}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"Prefect Secret block {name!r} must hold a JSON object of storage options, "
                         f"e.g. {{\"key\": ..., \"secret\": ...}}")
    return hide_secrets(value, secret=True)


def secure_storage_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validated storage options: secrets wrapped, a named ``secret_block`` loaded and merged under them."""
    options = dict(options)
    block = options.pop(SECRET_BLOCK, None)
    given = hide_secrets(options)
    if block is None:
        return given
    if not isinstance(block, str) or not block.strip():
        raise ValueError(f"{SECRET_BLOCK} must name a Prefect Secret block")
    return {**load_secret_block(block.strip()), **given}


# The type of every ``storage_options`` parameter and config field.
StorageOptions = Annotated[dict[str, Any], AfterValidator(secure_storage_options),
                           PlainSerializer(_dump, when_used="json")]
_ADAPTER: TypeAdapter[dict[str, Any]] = TypeAdapter(StorageOptions)


def validate_storage_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` as a ``StorageOptions`` field holds them (for callers outside a pydantic model)."""
    return _ADAPTER.validate_python(options or {})


def storage_option_is_secret(key: str) -> bool:
    """Whether ``a.b.c`` (a ``--storage-option`` key) names a secret: its value is then taken literally
    (not parsed as YAML, which would turn ``0123`` into 123) and never echoed in an error message."""
    return any(part.startswith(SECRET_PREFIX) or is_secret_name(part) for part in key.split("."))
