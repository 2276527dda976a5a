"""What a request allows: the caller's filters as one Q, and id lists as one array parameter."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import F, Lookup, Q
from django.db.models.expressions import RawSQL


def id_array(ids) -> RawSQL:
    """`field__in=id_array(ids)`: the ids as one array parameter. A list of a few hundred ids as
    separate parameters costs Django and psycopg about 2 ms a query to build and split."""
    return RawSQL("SELECT unnest(%s::bigint[])", [sorted(ids)])


class _AnyOfArray(Lookup):
    """`lhs = ANY(%s::bigint[])`, the right-hand side one array parameter."""

    lookup_name = "any_of_array"
    prepare_rhs = False  # a list of ids, not one value of the field

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs}::bigint[])", (*lhs_params, *rhs_params)


def id_among(ids, field: str = "id") -> Lookup:
    """`.filter(id_among(ids))`: `id = ANY(%s::bigint[])`, the ids as one array parameter, for
    reading a known set of rows. The planner reads them through the primary key: 200 of 10,000
    items in 0.27 ms and 229 buffers, where `id__in=id_array(ids)` (IN (SELECT unnest(...))) was
    planned as a hash semi-join over a sequential scan of the whole table, 3.6 ms and 646
    buffers (BENCHMARKS.md, the precomputed-list path)."""
    return _AnyOfArray(F(field), sorted(ids))


@dataclass(frozen=True)
class ItemFilters:
    """What the caller allows: categories, tags (any of), a price range. Empty means no limit."""

    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    exclude_ids: frozenset[int] = field(default_factory=frozenset)
    # Only these items (a shelf of new arrivals, the cold items of an evaluation); empty: all.
    only_ids: frozenset[int] = field(default_factory=frozenset)

    def q(self, prefix: str = "") -> Q:
        # Inactive items and those staff banned from recommendations never pass.
        condition = Q(**{f"{prefix}is_active": True}) & ~Q(**{f"{prefix}placement": "banned"})
        if self.categories:
            condition &= Q(**{f"{prefix}category__in": self.categories})
        if self.tags:
            condition &= Q(**{f"{prefix}tags__overlap": list(self.tags)})
        if self.price_min is not None:
            condition &= Q(**{f"{prefix}price__gte": self.price_min})
        if self.price_max is not None:
            condition &= Q(**{f"{prefix}price__lte": self.price_max})
        if self.exclude_ids:
            condition &= ~Q(**{f"{prefix}id__in": id_array(self.exclude_ids)})
        if self.only_ids:
            condition &= Q(**{f"{prefix}id__in": id_array(self.only_ids)})
        return condition

    def excluding(self, ids) -> ItemFilters:
        """The same filters, also leaving out these items."""
        return dataclasses.replace(self, exclude_ids=frozenset(self.exclude_ids | set(ids)))

    @property
    def is_selective(self) -> bool:
        return bool(
            self.categories or self.tags or self.only_ids or self.price_min is not None or self.price_max is not None
        )
