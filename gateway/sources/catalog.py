"""The catalog of sources: every folder gateway/sources/<name>/ that declares a `SPEC`,
plus the modules the environment variable GATEWAY_SOURCE_SPECS names (comma-separated,
each defining `SPEC`: a source kept outside this package, e.g. a plugin or a test's).

`Source`, the enum every layer above names sources by, is built here from the specs, in
their `order`. It is built once, when this module is first imported, so extra specs must
be named in the environment before the gateway is imported. A spec module must not
import this module (it is imported while the catalog is being built); its client gets
its member as `self.source`, set here.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from gateway.domain.records import SourceId
from gateway.sources.spec import SourceSpec, SourceSpecError

SPECS_ENV = "GATEWAY_SOURCE_SPECS"


def _spec_of_module(module_name: str, *, from_env: bool) -> SourceSpec:
    env = SPECS_ENV if from_env else None
    where = f"{SPECS_ENV} names {module_name!r}, which" if from_env else f"{module_name}"
    if not from_env:
        module = importlib.import_module(module_name)   # a bug in a built-in source: its own traceback
    else:
        try:
            module = importlib.import_module(module_name)
        except SourceSpecError:
            raise
        except Exception as exc:   # anything its import raised: one line, not a traceback
            raise SourceSpecError(f"{where} cannot be imported ({type(exc).__name__}: {exc})", name=env) from None
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, SourceSpec):
        raise SourceSpecError(f"{where} does not define SPEC = SourceSpec(...)", name=env)
    return spec


def _discover() -> list[SourceSpec]:
    here = Path(__file__).parent
    specs = [_spec_of_module(f"{__package__}.{info.name}", from_env=False)
             for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name) if info.ispkg]
    extra = [name.strip() for name in os.environ.get(SPECS_ENV, "").split(",") if name.strip()]
    specs += [_spec_of_module(name, from_env=True) for name in dict.fromkeys(extra)]
    for field in ("name", "order", "price_rank"):
        seen: dict[object, str] = {}
        for spec in specs:
            value = getattr(spec, field)
            if value in seen:
                raise SourceSpecError(f"sources {seen[value]} and {spec.name} have the same {field} ({value!r})",
                                      name=SPECS_ENV if os.environ.get(SPECS_ENV) else None)
            seen[value] = spec.name
    return sorted(specs, key=lambda s: s.order)


SPECS: tuple[SourceSpec, ...] = tuple(_discover())

# The members' values are the specs' names: CALICO, CRYPTOFUSE, ... (the GraphQL enum).
Source = SourceId("Source", [(spec.name, (spec.name, spec.display)) for spec in SPECS],  # type: ignore[call-overload]
                  module=__name__, qualname="Source")

SPEC_OF: Mapping[SourceId, SourceSpec] = MappingProxyType({Source(spec.name): spec for spec in SPECS})

for _source, _spec in SPEC_OF.items():
    _spec.client.source = _source    # the client's own member (a spec module cannot import Source)
del _source, _spec
