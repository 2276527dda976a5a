"""One HNSW index per (vector table, encoder model), made when a model first writes vectors.

The vector columns have no fixed width (several models coexist during an encoder change), and
pgvector can only index vectors of one width; so each model gets a partial expression index

    CREATE INDEX ... USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE model = '...'

and the queries (recommendations.retrieval.semantic) order by exactly that expression with that
condition, which is what lets the planner use it. Built CONCURRENTLY outside transactions, so
a new model's index never locks a table that is serving.
"""

from __future__ import annotations

import hashlib
import logging

from django.db import connection
from psycopg import sql

logger = logging.getLogger(__name__)

# (table, column naming the model) for every table of vectors.
VECTOR_TABLES = {
    "catalog_itemvector": "model_name",
    "users_activityvector": "model_name",
    "recommendations_userinterest": "embedding_model",
}
# Graph degree (pgvector's default) and build breadth (twice the default: clustered catalogs,
# such as a few help articles beside thousands of films, need the better-connected graph).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128


def vector_index_name(table: str, model_name: str) -> str:
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:10]
    return f"{table}_hnsw_{digest}"[:63]


# (database, index name) seen to exist by this process: every embedding call ensures its
# model's indexes, and after the first time that needs no catalog query.
_known_indexes: set[tuple[str, str]] = set()


def vector_index_ensure(*, table: str, model_name: str, dimensions: int) -> bool:
    """Create the model's index on table unless it exists. Returns True when it was created."""
    name = vector_index_name(table, model_name)
    key = (connection.settings_dict["NAME"], name)
    if key in _known_indexes:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        if cursor.fetchone():
            _known_indexes.add(key)
            return False
        concurrently = sql.SQL("" if connection.in_atomic_block else "CONCURRENTLY")
        statement = sql.SQL(
            "CREATE INDEX {concurrently} IF NOT EXISTS {name} ON {table} USING hnsw "
            "((embedding::vector({dimensions})) vector_cosine_ops) WITH (m = {m}, ef_construction = {ef}) "
            "WHERE {model_column} = {model_name}"
        ).format(
            concurrently=concurrently,
            name=sql.Identifier(name),
            table=sql.Identifier(table),
            dimensions=sql.Literal(int(dimensions)),
            m=sql.Literal(HNSW_M),
            ef=sql.Literal(HNSW_EF_CONSTRUCTION),
            model_column=sql.Identifier(VECTOR_TABLES[table]),
            model_name=sql.Literal(model_name),
        )
        cursor.execute(statement.as_string(cursor.connection))
    _known_indexes.add(key)
    logger.info("created vector index %s on %s for model=%s dimensions=%d", name, table, model_name, dimensions)
    return True


def vector_indexes_forget() -> None:
    """After a migrate (a database made anew, as the tests and the evaluation do), check again."""
    _known_indexes.clear()


def vector_indexes_ensure(*, model_name: str, dimensions: int) -> int:
    return sum(
        vector_index_ensure(table=table, model_name=model_name, dimensions=dimensions) for table in VECTOR_TABLES
    )
