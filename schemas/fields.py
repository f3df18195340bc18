"""Constrained field types shared by the command models.

Each type is a plain ``Annotated[str, ...]`` so the JSON Schema files carry the same rules
a non-Python producer must follow.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

#: A cPanel account name: lower-case letter first, then letters and digits, at most 16.
CpanelUser = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9]{0,15}$"),
    Field(description="cPanel account name: a lower-case letter, then up to 15 lower-case letters or digits."),
]

#: A mailbox address in ASCII (IDNA domains as xn-- labels).
EmailAddress = Annotated[
    str,
    StringConstraints(
        max_length=254,
        pattern=r"^[A-Za-z0-9!#$%*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%*+/=?^_`{|}~-]+)*@"
        r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    ),
    Field(description="mailbox address, local@domain, ASCII only (IDNA domains as xn-- labels)."),
]

#: A command id (the producer's idempotency key).
CommandId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"),
    Field(description="the producer's idempotency key: letters, digits and . _ : @ / -"),
]

#: A name of a producer, backend, reason or stream.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]

#: A Redis stream name the events are copied to.
StreamName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
]

#: A domain name in ASCII (IDNA domains as xn-- labels).
Domain = Annotated[
    str,
    StringConstraints(
        max_length=253,
        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    ),
    Field(description="domain name, ASCII only (IDNA domains as xn-- labels)."),
]

#: The local part of a mailbox address (before the @).
LocalPart = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9!#$%*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%*+/=?^_`{|}~-]+)*$"),
]

#: A mailbox password as the producer sends it (sealed at ingest; never stored in plain text).
Password = Annotated[str, StringConstraints(min_length=1, max_length=512)]

#: A mailbox quota in MB, or "unlimited".
Quota = Annotated[int, Field(ge=0, le=999_999)] | Annotated[str, StringConstraints(pattern=r"^unlimited$")]
