"""Recommender latency at scale (BENCHMARKS.md "Recommender latency at scale").

Builds a synthetic catalog in a database of its own (never the live one; the world and how it
is built: recommendations.evaluation.benchmark_data), then in the same warm process measures the
services the API calls, the semantic selector through HNSW against an exact scan, and a numpy
scan of the same vectors as the floor (recommendations.evaluation.benchmark). This command holds
the options, the report's frame (command line, machine, commit) and its Markdown.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test.utils import override_settings
from psycopg import sql

from core.command_support import git_commit
from core.conf import recommender_settings
from recommendations.evaluation.benchmark import benchmark_measure
from recommendations.evaluation.benchmark_data import (
    CATEGORIES,
    DIMENSIONS,
    SyntheticCatalog,
    SyntheticPerson,
    SyntheticWorld,
    synthetic_world_build,
)
from recommendations.evaluation.databases import attached_database, isolated_database
from recommendations.evaluation.split import EvaluationError
from recommendations.ml.encoder import model_dimensions


def _changed_paths() -> list[str]:
    """Uncommitted changes in the checkout the benchmark ran from (others may be editing it)."""
    try:
        return subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Command(BaseCommand):
    help = (
        "Benchmark the recommender at N synthetic items (clustered vectors) in an isolated database: index, "
        "behaviour model and interest build times; p50/p99 of recommend_for_user, recommend_for_text, "
        "similar_items; HNSW recall@10 against an exact scan, with and without a filter; a numpy scan as the floor."
    )

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, required=True)
        parser.add_argument("--people", type=int, default=1000)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--database", default=None, help="isolated database (default: <live>_bench_<N>)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--maintenance-work-mem",
            default="1GB",
            help="for this session's HNSW build: the graph must fit in it or the build slows down many times",
        )
        parser.add_argument("--out", default=None, help="JSON report (default: var/benchmarks/recommender-<N>.json)")
        parser.add_argument("--keep-database", action="store_true", help="leave the database for EXPLAIN afterwards")
        parser.add_argument(
            "--recall-requests",
            type=int,
            default=None,
            help="people in the HNSW-against-exact comparison (default: --requests; at 1M items an exact scan "
            "without a filter takes about 4 s)",
        )
        parser.add_argument(
            "--reuse-database",
            action="store_true",
            help="measure again in the database an earlier --keep-database run built (same --items and --seed), "
            "skipping the build",
        )

    def handle(
        self, *args, items, people, requests, database, seed, maintenance_work_mem, out, keep_database, **options
    ):
        reuse_database = options["reuse_database"]
        if items < 2 * CATEGORIES or people < 1 or requests < 1:
            raise CommandError(f"need --items >= {2 * CATEGORIES}, --people >= 1 and --requests >= 1")
        model_name = recommender_settings().serving_model
        if model_dimensions(model_name) != DIMENSIONS:
            raise CommandError(f"the serving model {model_name} does not make {DIMENSIONS}-dimension vectors")
        live = settings.DATABASES["default"]["NAME"]
        database = database or f"{live}_bench_{items}"
        report = self._report_start(
            items=items,
            people=people,
            requests=requests,
            seed=seed,
            maintenance_work_mem=maintenance_work_mem,
            recall_requests=options["recall_requests"],
            reuse_database=reuse_database,
            database=database,
            model_name=model_name,
        )
        # The requests are drawn from this generator, the world from the catalog's own.
        rng = random.Random(seed)
        started = time.monotonic()
        build_file = Path(settings.VAR_DIR) / "benchmarks" / f"{database}.build.json"
        try:
            with attached_database(database) if reuse_database else isolated_database(database):
                if reuse_database:
                    world = self._restore(report, build_file, n_items=items, seed=seed, model_name=model_name)
                else:
                    world = synthetic_world_build(
                        report=report,
                        n_items=items,
                        n_people=people,
                        seed=seed,
                        model_name=model_name,
                        maintenance_work_mem=maintenance_work_mem,
                        step=lambda name, run: self._step(report, name, run),
                    )
                    if keep_database:
                        self._save_build(report, world, build_file)
                # DEBUG (the development setting) makes every cursor record and format its SQL,
                # which a served process does not pay: measure without it.
                with override_settings(DEBUG=False):
                    benchmark_measure(
                        report,
                        world,
                        rng=rng,
                        n_requests=requests,
                        recall_requests=options["recall_requests"],
                        say=self.stderr.write,
                    )
        except EvaluationError as error:
            raise CommandError(str(error)) from error
        finally:
            if not (keep_database or reuse_database):
                self._drop(database)
        report["total_seconds"] = round(time.monotonic() - started, 1)
        self._report_write(report, path=Path(out) if out else None)

    def _report_write(self, report: dict, *, path: Path | None) -> None:
        """The JSON report (var/benchmarks/recommender-<N>.json unless --out), the Markdown on stdout."""
        report["machine"]["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        path = path or Path(settings.VAR_DIR) / "benchmarks" / f"recommender-{report['items']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))
        self.stdout.write(self._markdown(report))
        self.stdout.write(self.style.SUCCESS(f"written to {path}"))

    def _report_start(
        self,
        *,
        items: int,
        people: int,
        requests: int,
        seed: int,
        maintenance_work_mem: str,
        recall_requests: int | None,
        reuse_database: bool,
        database: str,
        model_name: str,
    ) -> dict:
        """The report's frame: how to run it again, on what, from which code."""
        return {
            "command": "manage.py benchmark_recommender "
            + f"--items {items} --people {people} --requests {requests} --seed {seed} "
            + f"--maintenance-work-mem {maintenance_work_mem}"
            + (f" --recall-requests {recall_requests}" if recall_requests else "")
            + (" --reuse-database" if reuse_database else ""),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": _cpu_model(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": [round(value, 2) for value in os.getloadavg()],
            },
            "git_commit": git_commit(),
            "uncommitted_changes": _changed_paths(),
            "database": database,
            "items": items,
            "people": people,
            "requests": requests,
            "model": model_name,
            "settings": {
                key: recommender_settings().as_dict()[key]
                for key in ("EXACT_SEARCH_MAX_VECTORS", "HNSW_EF_SEARCH", "CANDIDATES_PER_SOURCE", "HISTORY_ITEMS")
            },
            "build_seconds": {},
        }

    # --- building ---------------------------------------------------------------------------

    def _step(self, report: dict, name: str, run: Callable):
        self.stderr.write(f"{name}...")
        started = time.monotonic()
        result = run()
        report["build_seconds"][name] = round(time.monotonic() - started, 2)
        self.stderr.write(f"{name}: {report['build_seconds'][name]:.1f} s")
        return result

    def _save_build(self, report: dict, world: SyntheticWorld, path: Path) -> None:
        """What a later --reuse-database run needs: the build's figures and the people's picks."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {key: report[key] for key in ("items", "clusters", "hnsw_index", "behaviour_model", "build_seconds")}
        kept["item_ids"] = world.item_ids
        kept["people"] = {str(user_id): asdict(person) for user_id, person in world.people.items()}
        path.write_text(json.dumps(kept))

    def _restore(self, report: dict, path: Path, *, n_items: int, seed: int, model_name: str) -> SyntheticWorld:
        if not path.is_file():
            raise CommandError(f"{path} is missing: build the database first with --keep-database")
        kept = json.loads(path.read_text())
        if kept["items"] != n_items:
            raise CommandError(f"that database holds {kept['items']} items, not {n_items}")
        for key in ("clusters", "hnsw_index", "behaviour_model", "build_seconds"):
            report[key] = kept[key]
        report["reused_database"] = True
        return SyntheticWorld(
            model_name=model_name,
            # The generator is deterministic: the same seed gives the same vectors the build wrote.
            catalog=SyntheticCatalog(n_items=n_items, seed=seed),
            item_ids=kept["item_ids"],
            people={int(user_id): SyntheticPerson(**person) for user_id, person in kept["people"].items()},
        )

    def _drop(self, database: str) -> None:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            cursor.execute(statement.as_string(cursor.connection))

    # --- the report -------------------------------------------------------------------------

    def _markdown(self, report: dict) -> str:
        lines = [
            f"## {report['items']:,} items, {report['people']:,} people "
            f"({report['clusters']} clusters, semantic search: {report['semantic_search']})",
            "",
            "| operation | p50 ms | p99 ms | n |",
            "|---|---|---|---|",
        ]
        for name, figures in report["latency"].items():
            lines.append(f"| {name} | {figures['p50_ms']} | {figures['p99_ms']} | {figures['n']} |")
        kept = report["precomputed_list"]
        lines += [
            "",
            f"Precomputed lists: {kept['lists']} kept, {kept['mean_items']} items each, {kept['table_megabytes']} MB; "
            f"one-category requests answered from the list: {kept['one_category_answered_from_list']}",
        ]
        lines += [
            "",
            "| against an exact scan (semantic_candidates) | HNSW recall@10 (mean) | min "
            "| the service's plan: recall@10 | min | people |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for label, figures in report["recall_hnsw_against_exact"].items():
            lines.append(
                f"| {label} | {figures['recall_at_10']} | {figures['min_recall_at_10']} "
                f"| {figures['served_recall_at_10']} | {figures['served_min_recall_at_10']} | {figures['people']} |"
            )
        lines += [
            "",
            "Build (seconds): " + ", ".join(f"{name} {value}" for name, value in report["build_seconds"].items()),
        ]
        index = report["hnsw_index"]
        lines.append(
            f"HNSW index {index['megabytes']} MB (vector table {index['vector_table_megabytes']} MB), "
            f"maintenance_work_mem {index['maintenance_work_mem']}; behaviour model: {report['behaviour_model']}"
        )
        for name, one in report["queries_per_request"].items():
            lines += [
                "",
                f"{name}: {one['ms_per_request']} ms a request over {one['requests']}, "
                f"{one['queries_per_request']} queries ({one['sql_ms_per_request']} ms in SQL); costliest:",
            ]
            lines += [
                f"- {query['ms_per_request']} ms ({query['per_request']}x): {query['sql'][:140]}"
                for query in one["costliest"][:3]
            ]
        lines.append(
            f"Load average before {report['machine']['load_average_before']}, "
            f"after {report['machine']['load_average_after']}"
        )
        return "\n".join(lines) + "\n"
